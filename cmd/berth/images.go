package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// display renders a JSON progress stream like docker does (progress bars on
// a terminal, plain lines otherwise) and returns the first error it holds.
func (c *cli) display(r io.Reader, aux func(jsonstream.Message)) error {
	fd, isTerm := uintptr(0), false
	if f, ok := c.out.(*os.File); ok {
		fd, isTerm = f.Fd(), term.IsTerminal(int(f.Fd()))
	}
	return jsonmessage.DisplayJSONMessagesStream(r, c.out, fd, isTerm, aux)
}

// drainQuiet reads a progress stream, printing nothing but returning its
// error.
func drainQuiet(r io.Reader) error {
	return jsonmessage.DisplayJSONMessagesStream(r, io.Discard, 0, false, nil)
}

func parsePlatform(s string) ([]ocispec.Platform, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("invalid platform %q: want os/arch[/variant]", s)
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return []ocispec.Platform{p}, nil
}

func (c *cli) pullCommand() *cobra.Command {
	var quiet, all bool
	var platform string
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			named, err := reference.ParseNormalizedNamed(args[0])
			if err != nil {
				return fmt.Errorf("invalid reference format: %w", err)
			}
			if all && !reference.IsNameOnly(named) {
				return errors.New("tag can't be used with --all-tags/-a")
			}
			if !all && reference.IsNameOnly(named) {
				named = reference.TagNameOnly(named)
				if !quiet {
					fmt.Fprintf(c.out, "Using default tag: %s\n", "latest")
				}
			}
			plats, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			authHeader, err := encodedAuth(reference.Domain(named))
			if err != nil {
				return err
			}
			resp, err := api.ImagePull(ctx, named.String(), client.ImagePullOptions{All: all, RegistryAuth: authHeader, Platforms: plats})
			if err != nil {
				return err
			}
			defer resp.Close()
			if quiet {
				if err := drainQuiet(resp); err != nil {
					return err
				}
				fmt.Fprintln(c.out, reference.FamiliarString(named))
				return nil
			}
			if err := c.display(resp, nil); err != nil {
				return err
			}
			fmt.Fprintln(c.out, named.String())
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress verbose output")
	cmd.Flags().BoolVarP(&all, "all-tags", "a", false, "download all tagged images in the repository")
	cmd.Flags().StringVar(&platform, "platform", os.Getenv("DOCKER_DEFAULT_PLATFORM"), "set platform if server is multi-platform capable")
	return cmd
}

func (c *cli) pushCommand() *cobra.Command {
	var quiet bool
	var platform string
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			named, err := reference.ParseNormalizedNamed(args[0])
			if err != nil {
				return fmt.Errorf("invalid reference format: %w", err)
			}
			if reference.IsNameOnly(named) {
				named = reference.TagNameOnly(named)
				if !quiet {
					fmt.Fprintf(c.out, "Using default tag: %s\n", "latest")
				}
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			authHeader, err := encodedAuth(reference.Domain(named))
			if err != nil {
				return err
			}
			opts := client.ImagePushOptions{RegistryAuth: authHeader}
			if plats, err := parsePlatform(platform); err != nil {
				return err
			} else if len(plats) == 1 {
				opts.Platform = &plats[0]
			}
			resp, err := api.ImagePush(ctx, named.String(), opts)
			if err != nil {
				return err
			}
			defer resp.Close()
			if quiet {
				if err := drainQuiet(resp); err != nil {
					return err
				}
				fmt.Fprintln(c.out, named.String())
				return nil
			}
			return c.display(resp, nil)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress verbose output")
	cmd.Flags().StringVar(&platform, "platform", "", "push only this platform of a multi-platform image")
	return cmd
}

// imageRow is one line of berth images, with docker's template fields.
type imageRow struct {
	Repository, Tag, Digest, ID string
	CreatedSince, CreatedAt     string
	Size                        string
	Containers                  string
	SharedSize, UniqueSize      string
	VirtualSize                 string
}

func parseFilters(in []string) (client.Filters, error) {
	f := client.Filters{}
	for _, s := range in {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("bad format of filter (expected name=value): %s", s)
		}
		f.Add(strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v))
	}
	return f, nil
}

func (c *cli) imagesCommand(use string, aliases ...string) *cobra.Command {
	var quiet, all, digests, noTrunc bool
	var filters []string
	var format string
	cmd := &cobra.Command{
		Use:     use + " [OPTIONS] [REPOSITORY[:TAG]]",
		Aliases: aliases,
		Short:   "List images",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			f, err := parseFilters(filters)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				f.Add("reference", args[0])
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.ImageList(ctx, client.ImageListOptions{All: all, Filters: f})
			if err != nil {
				return err
			}
			if quiet {
				seen := map[string]bool{}
				for _, s := range res.Items {
					id := s.ID
					if !noTrunc {
						id = shortID(id)
					}
					if !seen[id] {
						seen[id] = true
						fmt.Fprintln(c.out, id)
					}
				}
				return nil
			}
			var rows []any
			for _, s := range res.Items {
				for _, r := range imageRows(s, noTrunc) {
					rows = append(rows, r)
				}
			}
			def := "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
			if digests {
				def = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
			}
			header := map[string]string{"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
				"CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
				"SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}
			return writeFormatted(c.out, format, def, header, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	fl.BoolVarP(&all, "all", "a", false, "show all images (default hides intermediate images)")
	fl.BoolVar(&digests, "digests", false, "show digests")
	fl.BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	fl.StringArrayVarP(&filters, "filter", "f", nil, "filter output based on conditions provided")
	fl.StringVar(&format, "format", "", "format output using a Go template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')")
	return cmd
}

// imageRows expands a summary into docker's rows: one per tag, plus
// untagged repositories known only by digest, or <none>:<none>.
func imageRows(s image.Summary, noTrunc bool) []imageRow {
	id := s.ID
	if !noTrunc {
		id = shortID(id)
	}
	created := time.Unix(s.Created, 0)
	base := imageRow{ID: id, CreatedSince: since(created), CreatedAt: created.Format("2006-01-02 15:04:05 -0700 MST"),
		Size: humanSize(s.Size), VirtualSize: humanSize(s.Size), Containers: "N/A", SharedSize: "N/A", UniqueSize: "N/A"}
	digestOf := map[string]string{}
	for _, d := range s.RepoDigests {
		if repo, dg, ok := strings.Cut(d, "@"); ok {
			digestOf[repo] = dg
		}
	}
	var rows []imageRow
	seenRepo := map[string]bool{}
	tags := append([]string{}, s.RepoTags...)
	sort.Strings(tags)
	for _, t := range tags {
		i := strings.LastIndex(t, ":")
		if i < 0 || strings.Contains(t[i:], "/") {
			continue
		}
		r := base
		r.Repository, r.Tag = t[:i], t[i+1:]
		r.Digest = orNone(digestOf[r.Repository])
		seenRepo[r.Repository] = true
		rows = append(rows, r)
	}
	for repo, dg := range digestOf {
		if seenRepo[repo] {
			continue
		}
		r := base
		r.Repository, r.Tag, r.Digest = repo, "<none>", dg
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		r := base
		r.Repository, r.Tag, r.Digest = "<none>", "<none>", "<none>"
		rows = append(rows, r)
	}
	return rows
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// formatInspect prints values as an indented JSON array, or each through
// a --format template.
func formatInspect(out io.Writer, format string, values []any) error {
	if format == "" || format == "json" {
		var raws []json.RawMessage
		for _, v := range values {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			raws = append(raws, b)
		}
		if raws == nil {
			raws = []json.RawMessage{}
		}
		b, err := json.MarshalIndent(raws, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, string(b))
		return err
	}
	tmpl, err := template.New("inspect").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	for _, v := range values {
		// As docker's: the template runs over the API type first, then,
		// where that fails, over the JSON (its field names).
		var buf bytes.Buffer
		typed := v
		if in, ok := v.(inspected); ok {
			typed = in.typed
		}
		if typed != nil && tmpl.Execute(&buf, typed) == nil {
			fmt.Fprintln(out, buf.String())
			continue
		}
		buf.Reset()
		b, _ := json.Marshal(v)
		var generic any
		_ = json.Unmarshal(b, &generic)
		if err := tmpl.Execute(&buf, generic); err != nil {
			return fmt.Errorf("template: %w", err)
		}
		fmt.Fprintln(out, buf.String())
	}
	return nil
}

// inspected is an object as the daemon described it: its raw JSON, printed
// as it is, and the same decoded into the API type (nil when it does not
// decode), which templates see first.
type inspected struct {
	typed any
	raw   json.RawMessage
}

// newInspected decodes raw into typed, a pointer to the API type.
func newInspected(raw []byte, typed any) inspected {
	raw = bytes.TrimSpace(raw)
	if err := json.Unmarshal(raw, typed); err != nil {
		typed = nil
	}
	return inspected{typed: typed, raw: raw}
}

func (v inspected) MarshalJSON() ([]byte, error) { return v.raw, nil }

func (c *cli) inspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE [IMAGE...]",
		Short: "Display detailed information on one or more images",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			var values []any
			var errs []error
			for _, name := range args {
				var raw bytes.Buffer
				if _, err := api.ImageInspect(ctx, name, client.ImageInspectWithRawResponse(&raw)); err != nil {
					errs = append(errs, err)
					continue
				}
				values = append(values, newInspected(raw.Bytes(), &image.InspectResponse{}))
			}
			if err := formatInspect(c.out, format, values); err != nil {
				return err
			}
			if len(errs) > 0 {
				return errors.Join(errs...)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output using a Go template or 'json'")
	return cmd
}

type historyRow struct {
	ID, CreatedSince, CreatedAt, CreatedBy, Size, Comment string
}

func (c *cli) historyCommand() *cobra.Command {
	var human, noTrunc, quiet bool
	var format string
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show the history of an image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.ImageHistory(ctx, args[0])
			if err != nil {
				return err
			}
			var rows []any
			for _, h := range res.Items {
				id := h.ID
				if !noTrunc && strings.HasPrefix(id, "sha256:") {
					id = shortID(id)
				}
				if quiet {
					fmt.Fprintln(c.out, id)
					continue
				}
				created := time.Unix(h.Created, 0)
				r := historyRow{ID: id, CreatedBy: strings.ReplaceAll(h.CreatedBy, "\t", " "), Comment: h.Comment}
				if human {
					r.CreatedSince, r.CreatedAt, r.Size = since(created), since(created), humanSize(h.Size)
				} else {
					r.CreatedSince, r.CreatedAt, r.Size = created.Format(time.RFC3339), created.Format(time.RFC3339), fmt.Sprint(h.Size)
				}
				if !noTrunc && len(r.CreatedBy) > 45 {
					r.CreatedBy = r.CreatedBy[:44] + "…"
				}
				rows = append(rows, r)
			}
			if quiet {
				return nil
			}
			header := map[string]string{"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
			return writeFormatted(c.out, format, "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}", header, rows)
		},
	}
	// No -H shorthand: -H is the global --host.
	cmd.Flags().BoolVar(&human, "human", true, "print sizes and dates in human readable format")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	cmd.Flags().StringVar(&format, "format", "", "format output using a Go template")
	return cmd
}

func (c *cli) tagCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			_, err = api.ImageTag(cmd.Context(), client.ImageTagOptions{Source: args[0], Target: args[1]})
			return err
		},
	}
}

func (c *cli) rmiCommand(use string, aliases ...string) *cobra.Command {
	var force, noPrune bool
	cmd := &cobra.Command{
		Use:     use + " [OPTIONS] IMAGE [IMAGE...]",
		Aliases: aliases,
		Short:   "Remove one or more images",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			var errs []string
			for _, name := range args {
				res, err := api.ImageRemove(ctx, name, client.ImageRemoveOptions{Force: force, PruneChildren: !noPrune})
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				for _, d := range res.Items {
					if d.Untagged != "" {
						fmt.Fprintln(c.out, "Untagged:", d.Untagged)
					}
					if d.Deleted != "" {
						fmt.Fprintln(c.out, "Deleted:", d.Deleted)
					}
				}
			}
			if len(errs) > 0 {
				return statusError{code: 1, msg: strings.Join(errs, "\n")}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "force removal of the image")
	cmd.Flags().BoolVar(&noPrune, "no-prune", false, "do not delete untagged parents")
	return cmd
}

func (c *cli) pruneCommand() *cobra.Command {
	var all, force bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			f, err := parseFilters(filters)
			if err != nil {
				return err
			}
			warning := "WARNING! This will remove all dangling images."
			if all {
				f.Add("dangling", "false")
				warning = "WARNING! This will remove all images without at least one container associated to them."
			}
			if !force && !c.confirm(warning) {
				return nil
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.ImagePrune(ctx, client.ImagePruneOptions{Filters: f})
			if err != nil {
				return err
			}
			var removed []string
			for _, d := range res.Report.ImagesDeleted {
				if d.Untagged != "" {
					removed = append(removed, "untagged: "+d.Untagged)
				}
				if d.Deleted != "" {
					removed = append(removed, "deleted: "+d.Deleted)
				}
			}
			c.printPruned("Deleted Images:", removed, res.Report.SpaceReclaimed)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all unused images, not just dangling ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "provide filter values (e.g. 'until=<timestamp>')")
	return cmd
}

func (c *cli) saveCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Save one or more images to a tar archive (streamed to STDOUT by default)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var w io.Writer = c.out
			if output == "" {
				if f, ok := c.out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
				}
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			rc, err := api.ImageSave(ctx, args)
			if err != nil {
				return err
			}
			defer rc.Close()
			if output != "" {
				tmp := output + ".tmp"
				f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
				if err != nil {
					return fmt.Errorf("failed to save image: %w", err)
				}
				if _, err := io.Copy(f, rc); err != nil {
					f.Close()
					os.Remove(tmp)
					return fmt.Errorf("failed to save image: %w", err)
				}
				if err := f.Close(); err != nil {
					os.Remove(tmp)
					return err
				}
				return os.Rename(tmp, output)
			}
			_, err = io.Copy(w, rc)
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to a file, instead of STDOUT")
	return cmd
}

func (c *cli) loadCommand() *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load an image from a tar archive or STDIN",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in := c.in
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			} else if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				return errors.New("requested load from stdin, but stdin is empty")
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.ImageLoad(ctx, in, client.ImageLoadWithQuiet(quiet))
			if err != nil {
				return err
			}
			defer res.Close()
			return c.display(res, nil)
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "read from tar archive file, instead of STDIN")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress the load output")
	return cmd
}

func (c *cli) importCommand() *cobra.Command {
	var changes []string
	var message, platform string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
		Short: "Import the contents from a tarball to create a filesystem image",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			source := client.ImageImportSource{Source: c.in, SourceName: "-"}
			switch src := args[0]; {
			case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
				// berthd downloads it.
				source = client.ImageImportSource{SourceName: src}
			case src != "-":
				f, err := os.Open(src)
				if err != nil {
					return err
				}
				defer f.Close()
				source.Source = f
			}
			ref := ""
			if len(args) == 2 {
				named, err := reference.ParseNormalizedNamed(args[1])
				if err != nil {
					return fmt.Errorf("invalid reference format: %w", err)
				}
				ref = reference.FamiliarString(reference.TagNameOnly(named))
			}
			opts := client.ImageImportOptions{Message: message, Changes: changes}
			if plats, err := parsePlatform(platform); err != nil {
				return err
			} else if len(plats) == 1 {
				opts.Platform = plats[0]
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.ImageImport(ctx, source, ref, opts)
			if err != nil {
				return err
			}
			defer res.Close()
			return c.display(res, nil)
		},
	}
	cmd.Flags().StringArrayVarP(&changes, "change", "c", nil, "apply Dockerfile instruction to the created image")
	cmd.Flags().StringVarP(&message, "message", "m", "", "set commit message for imported image")
	cmd.Flags().StringVar(&platform, "platform", "", "set platform if server is multi-platform capable")
	return cmd
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/cli/opts"
	units "github.com/docker/go-units"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// containerGroup is `berth container ...`: every container command under
// docker's names and aliases.
func (c *cli) containerGroup() *cobra.Command {
	g := &cobra.Command{Use: "container", Short: "Manage containers"}
	g.AddCommand(c.runCommand(), c.createCommand(), c.startCommand(), c.stopCommand(), c.killCommand(),
		c.restartCommand(), c.rmCommand("rm", "remove"), c.psCommand("ls", "list", "ps"), c.logsCommand(),
		c.execCommand(), c.attachCommand(), c.waitCommand(), c.containerInspectCommand(), c.topCommand(),
		c.statsCommand(), c.pauseCommand(), c.unpauseCommand(), c.renameCommand(), c.cpCommand(),
		c.diffCommand(), c.exportCommand(), c.commitCommand(), c.updateCommand(), c.containerPruneCommand())
	return g
}

// containerCommands are the top-level shortcuts docker offers.
func (c *cli) containerCommands() []*cobra.Command {
	return []*cobra.Command{c.runCommand(), c.createCommand(), c.startCommand(), c.stopCommand(),
		c.killCommand(), c.restartCommand(), c.rmCommand("rm"), c.psCommand("ps"), c.logsCommand(),
		c.execCommand(), c.attachCommand(), c.waitCommand(), c.topCommand(), c.statsCommand(),
		c.pauseCommand(), c.unpauseCommand(), c.renameCommand(), c.cpCommand(), c.diffCommand(),
		c.exportCommand(), c.commitCommand(), c.updateCommand()}
}

// forEach runs fn on every named container, printing each name that
// succeeded and every error, as docker's multi-container commands do.
func (c *cli) forEach(ctx context.Context, names []string, fn func(api *client.Client, name string) error) error {
	api, err := c.client(ctx)
	if err != nil {
		return err
	}
	var errs []string
	for _, n := range names {
		if err := fn(api, n); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		fmt.Fprintln(c.out, n)
	}
	if len(errs) > 0 {
		return statusError{code: 1, msg: strings.Join(errs, "\n")}
	}
	return nil
}

func (c *cli) startCommand() *cobra.Command {
	var attach, interactive bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if !attach && !interactive {
				api, err := c.client(ctx)
				if err != nil {
					return err
				}
				// As docker's: each error as it comes, then the list of
				// the containers that did not start.
				var failed []string
				for _, n := range args {
					if _, err := api.ContainerStart(ctx, n, client.ContainerStartOptions{}); err != nil {
						fmt.Fprintln(c.errw, err)
						failed = append(failed, n)
						continue
					}
					fmt.Fprintln(c.out, n)
				}
				if len(failed) > 0 {
					return statusError{code: 1, msg: "Error: failed to start containers: " + strings.Join(failed, ", ")}
				}
				return nil
			}
			if len(args) > 1 {
				return errors.New("you cannot start and attach multiple containers at once")
			}
			return c.startAttached(ctx, args[0], interactive, detachKeys)
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach STDOUT/STDERR and forward signals")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach container's STDIN")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "override the key sequence for detaching a container")
	return cmd
}

// startAttached is start -a [-i]: attach, start, stream, and exit with the
// container's code.
func (c *cli) startAttached(ctx context.Context, name string, interactive bool, detachKeys string) error {
	keys, err := parseDetachKeys(detachKeys)
	if err != nil {
		return err
	}
	api, err := c.client(ctx)
	if err != nil {
		return err
	}
	info, err := api.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		return err
	}
	cfg := info.Container.Config
	stdin := interactive && cfg.OpenStdin
	sctx := context.WithoutCancel(ctx)
	if !cfg.Tty {
		stop := c.proxySignals(sctx, api, info.Container.ID)
		defer stop()
	}
	resp, err := api.ContainerAttach(sctx, info.Container.ID, client.ContainerAttachOptions{Stream: true,
		Stdin: stdin, Stdout: true, Stderr: true, DetachKeys: detachKeys})
	if err != nil {
		return err
	}
	defer resp.Close()
	wait := api.ContainerWait(sctx, info.Container.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := api.ContainerStart(sctx, info.Container.ID, client.ContainerStartOptions{}); err != nil {
		return startError(err)
	}
	if cfg.Tty && c.outIsTerminal() {
		stop := c.monitorSize(sctx, func(h, w uint) error {
			_, err := api.ContainerResize(sctx, info.Container.ID, client.ContainerResizeOptions{Height: h, Width: w})
			return err
		})
		defer stop()
	}
	var in io.Reader
	if stdin {
		in = c.in
	}
	detached, err := c.stream(sctx, resp.HijackedResponse, streamOptions{tty: cfg.Tty, stdin: in, stdout: c.out, stderr: c.errw, detachKeys: keys})
	if err != nil || detached {
		return err
	}
	return waitExit(ctx, wait)
}

func (c *cli) attachCommand() *cobra.Command {
	var noStdin, sigProxy bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach local standard input, output, and error streams to a running container",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return err
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			info, err := api.ContainerInspect(ctx, args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			ct := info.Container
			if ct.State == nil || !ct.State.Running {
				return errors.New("You cannot attach to a stopped container, start it first") //nolint:staticcheck // docker's words
			}
			if ct.State.Paused {
				return errors.New("you cannot attach to a paused container, unpause it first")
			}
			stdin := !noStdin && ct.Config.OpenStdin
			if stdin && ct.Config.Tty && !c.inIsTerminal() {
				return errors.New("the input device is not a TTY")
			}
			sctx := ctx
			if sigProxy && !ct.Config.Tty {
				sctx = context.WithoutCancel(ctx)
				stop := c.proxySignals(sctx, api, ct.ID)
				defer stop()
			}
			// The exit code comes from a wait made before attaching, so it
			// sees this run's end.
			wctx, cancelWait := context.WithCancel(sctx)
			defer cancelWait()
			wait := api.ContainerWait(wctx, ct.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
			resp, err := api.ContainerAttach(sctx, ct.ID, client.ContainerAttachOptions{Stream: true,
				Stdin: stdin, Stdout: true, Stderr: true, DetachKeys: detachKeys})
			if err != nil {
				return err
			}
			defer resp.Close()
			if ct.Config.Tty && c.outIsTerminal() {
				stop := c.monitorSize(sctx, func(h, w uint) error {
					_, err := api.ContainerResize(sctx, ct.ID, client.ContainerResizeOptions{Height: h, Width: w})
					return err
				})
				defer stop()
			}
			var in io.Reader
			if stdin {
				in = c.in
			}
			detached, err := c.stream(sctx, resp.HijackedResponse, streamOptions{tty: ct.Config.Tty, stdin: in, stdout: c.out, stderr: c.errw, detachKeys: keys})
			if err != nil || detached {
				return err
			}
			return waitExit(ctx, wait)
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "do not attach STDIN")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "proxy all received signals to the process")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "override the key sequence for detaching a container")
	return cmd
}

// eachContainerCommand is a command that does one thing to every
// container named (stop, kill, rm, ...), printing each name that succeeded
// and then every error, as docker's do.
func (c *cli) eachContainerCommand(use, short string, do func(ctx context.Context, api *client.Client, name string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return c.forEach(ctx, args, func(api *client.Client, n string) error { return do(ctx, api, n) })
		},
	}
}

// stopFlags are stop's and restart's -t and -s.
type stopFlags struct {
	cmd     *cobra.Command
	timeout int
	signal  string
}

func (f *stopFlags) add(cmd *cobra.Command) *cobra.Command {
	f.cmd = cmd
	cmd.Flags().IntVarP(&f.timeout, "timeout", "t", 0, "seconds to wait before killing the container")
	cmd.Flags().StringVarP(&f.signal, "signal", "s", "", "signal to send to the container")
	return cmd
}

// timeoutSet is -t when given, else nil: the container's own stop timeout.
func (f *stopFlags) timeoutSet() *int {
	if f.cmd.Flags().Changed("timeout") {
		return &f.timeout
	}
	return nil
}

func (c *cli) stopCommand() *cobra.Command {
	var f stopFlags
	return f.add(c.eachContainerCommand("stop [OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running containers",
		func(ctx context.Context, api *client.Client, n string) error {
			_, err := api.ContainerStop(ctx, n, client.ContainerStopOptions{Signal: f.signal, Timeout: f.timeoutSet()})
			return err
		}))
}

func (c *cli) restartCommand() *cobra.Command {
	var f stopFlags
	return f.add(c.eachContainerCommand("restart [OPTIONS] CONTAINER [CONTAINER...]", "Restart one or more containers",
		func(ctx context.Context, api *client.Client, n string) error {
			_, err := api.ContainerRestart(ctx, n, client.ContainerRestartOptions{Signal: f.signal, Timeout: f.timeoutSet()})
			return err
		}))
}

func (c *cli) killCommand() *cobra.Command {
	var sig string
	cmd := c.eachContainerCommand("kill [OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running containers",
		func(ctx context.Context, api *client.Client, n string) error {
			_, err := api.ContainerKill(ctx, n, client.ContainerKillOptions{Signal: sig})
			return err
		})
	cmd.Flags().StringVarP(&sig, "signal", "s", "", "signal to send to the container")
	return cmd
}

func (c *cli) rmCommand(use string, aliases ...string) *cobra.Command {
	var o client.ContainerRemoveOptions
	cmd := c.eachContainerCommand(use+" [OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers",
		func(ctx context.Context, api *client.Client, n string) error {
			_, err := api.ContainerRemove(ctx, n, o)
			return err
		})
	cmd.Aliases = aliases
	cmd.Flags().BoolVarP(&o.Force, "force", "f", false, "force the removal of a running container (uses SIGKILL)")
	cmd.Flags().BoolVarP(&o.RemoveVolumes, "volumes", "v", false, "remove anonymous volumes associated with the container")
	cmd.Flags().BoolVarP(&o.RemoveLinks, "link", "l", false, "remove the specified link")
	return cmd
}

func (c *cli) pauseCommand() *cobra.Command {
	return c.eachContainerCommand("pause CONTAINER [CONTAINER...]", "Pause all processes within one or more containers",
		func(ctx context.Context, api *client.Client, n string) error {
			_, err := api.ContainerPause(ctx, n, client.ContainerPauseOptions{})
			return err
		})
}

func (c *cli) unpauseCommand() *cobra.Command {
	return c.eachContainerCommand("unpause CONTAINER [CONTAINER...]", "Unpause all processes within one or more containers",
		func(ctx context.Context, api *client.Client, n string) error {
			_, err := api.ContainerUnpause(ctx, n, client.ContainerUnpauseOptions{})
			return err
		})
}

func (c *cli) renameCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			if _, err := api.ContainerRename(ctx, args[0], client.ContainerRenameOptions{NewName: args[1]}); err != nil {
				// As docker's: the daemon's answer, then what failed.
				fmt.Fprintln(c.errw, err)
				return statusError{code: 1, msg: "Error: failed to rename container named " + args[0]}
			}
			return nil
		},
	}
}

func (c *cli) waitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			var errs []string
			for _, n := range args {
				w := api.ContainerWait(ctx, n, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
				select {
				case res := <-w.Result:
					if res.Error != nil && res.Error.Message != "" {
						errs = append(errs, res.Error.Message)
						continue
					}
					fmt.Fprintln(c.out, res.StatusCode)
				case err := <-w.Error:
					errs = append(errs, err.Error())
				}
			}
			if len(errs) > 0 {
				return errors.New(strings.Join(errs, "\n"))
			}
			return nil
		},
	}
}

func (c *cli) logsCommand() *cobra.Command {
	var o client.ContainerLogsOptions
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			info, err := api.ContainerInspect(ctx, args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			o.ShowStdout, o.ShowStderr = true, true
			rc, err := api.ContainerLogs(ctx, info.Container.ID, o)
			if err != nil {
				return err
			}
			defer rc.Close()
			if info.Container.Config != nil && info.Container.Config.Tty {
				_, err = io.Copy(c.out, rc)
			} else {
				_, err = stdcopy.StdCopy(c.out, c.errw, rc)
			}
			if err != nil && ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&o.Follow, "follow", "f", false, "follow log output")
	fl.StringVar(&o.Since, "since", "", "show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)")
	fl.StringVar(&o.Until, "until", "", "show logs before a timestamp or relative (e.g. 42m)")
	fl.BoolVarP(&o.Timestamps, "timestamps", "t", false, "show timestamps")
	fl.BoolVar(&o.Details, "details", false, "show extra details provided to logs")
	fl.StringVarP(&o.Tail, "tail", "n", "all", "number of lines to show from the end of the logs")
	return cmd
}

// containerRow is one line of berth ps, with docker's template fields.
type containerRow struct {
	ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status string
	Size, Names, Labels, Mounts, Networks                           string
	labels                                                          map[string]string
}

// Label returns one label's value, as docker's {{.Label "key"}}.
func (r containerRow) Label(k string) string { return r.labels[k] }

func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func containerRowOf(s container.Summary, noTrunc bool) containerRow {
	var names []string
	for _, n := range s.Names {
		n = strings.TrimPrefix(n, "/")
		if !strings.Contains(n, "/") {
			names = append(names, n)
		}
	}
	id, img, cmd := s.ID, s.Image, s.Command
	if !noTrunc {
		id = shortID(id)
		if strings.HasPrefix(img, "sha256:") {
			img = shortID(img)
		}
		cmd = ellipsis(cmd, 20)
	}
	created := time.Unix(s.Created, 0)
	var lbls []string
	for k, v := range s.Labels {
		lbls = append(lbls, k+"="+v)
	}
	sortStrings(lbls)
	var mounts []string
	for _, m := range s.Mounts {
		n := m.Name
		if n == "" {
			n = m.Source
		}
		if !noTrunc {
			n = ellipsis(n, 15)
		}
		mounts = append(mounts, n)
	}
	var nets []string
	if s.NetworkSettings != nil {
		for n := range s.NetworkSettings.Networks {
			nets = append(nets, n)
		}
	}
	sortStrings(nets)
	size := humanSize(s.SizeRw)
	if s.SizeRootFs > 0 {
		size += " (virtual " + humanSize(s.SizeRootFs) + ")"
	}
	return containerRow{ID: id, Image: img, Command: strconv.Quote(cmd), CreatedAt: created.Format("2006-01-02 15:04:05 -0700 MST"),
		RunningFor: since(created), State: string(s.State), Status: s.Status, Size: size, Names: strings.Join(names, ","),
		Labels: strings.Join(lbls, ","), Mounts: strings.Join(mounts, ","), Networks: strings.Join(nets, ","), labels: s.Labels}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func (c *cli) psCommand(use string, aliases ...string) *cobra.Command {
	var all, quiet, size, latest, noTrunc bool
	var last int
	var format string
	filters := opts.NewFilterOpt()
	cmd := &cobra.Command{
		Use:     use + " [OPTIONS]",
		Aliases: aliases,
		Short:   "List containers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			o := client.ContainerListOptions{All: all || latest || last > 0, Size: size, Filters: filters.Value(), Limit: last}
			if latest {
				o.Limit = 1
			}
			if !size && strings.Contains(format, ".Size") {
				o.Size = true
			}
			res, err := api.ContainerList(ctx, o)
			if err != nil {
				return err
			}
			if quiet {
				for _, s := range res.Items {
					id := s.ID
					if !noTrunc {
						id = shortID(id)
					}
					fmt.Fprintln(c.out, id)
				}
				return nil
			}
			rows := make([]any, 0, len(res.Items))
			for _, s := range res.Items {
				rows = append(rows, containerRowOf(s, noTrunc))
			}
			def := "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
			if size {
				def += "\t{{.Size}}"
			}
			header := map[string]string{"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
				"RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
				"Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS"}
			return writeFormatted(c.out, format, def, header, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all", "a", false, "show all containers (default shows just running)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "only display container IDs")
	fl.BoolVarP(&size, "size", "s", false, "display total file sizes")
	fl.BoolVarP(&latest, "latest", "l", false, "show the latest created container (includes all states)")
	fl.IntVarP(&last, "last", "n", -1, "show n last created containers (includes all states)")
	fl.BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	fl.StringVar(&format, "format", "", "format output using a Go template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')")
	fl.VarP(&filters, "filter", "f", "filter output based on conditions provided")
	return cmd
}

func (c *cli) topCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top CONTAINER [ps OPTIONS]",
		Short: "Display the running processes of a container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.ContainerTop(ctx, args[0], client.ContainerTopOptions{Arguments: args[1:]})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.out, 20, 1, 3, ' ', 0)
			fmt.Fprintln(w, strings.Join(res.Titles, "\t"))
			for _, p := range res.Processes {
				fmt.Fprintln(w, strings.Join(p, "\t"))
			}
			return w.Flush()
		},
	}
	// Everything after the container is ps's: `top c -o pid,comm`.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func (c *cli) diffCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "diff CONTAINER",
		Short: "Inspect changes to files or directories on a container's filesystem",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.ContainerDiff(ctx, args[0], client.ContainerDiffOptions{})
			if err != nil {
				return err
			}
			for _, ch := range res.Changes {
				fmt.Fprintf(c.out, "%s %s\n", ch.Kind, ch.Path)
			}
			return nil
		},
	}
}

func (c *cli) exportCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [OPTIONS] CONTAINER",
		Short: "Export a container's filesystem as a tar archive",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if output == "" && c.outIsTerminal() {
				return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			rc, err := api.ContainerExport(ctx, args[0], client.ContainerExportOptions{})
			if err != nil {
				return err
			}
			defer rc.Close()
			return writeTo(output, c.out, rc)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to a file, instead of STDOUT")
	return cmd
}

// writeTo copies r to the file at path (written whole or not at all), or
// to out when path is empty.
func writeTo(path string, out io.Writer, r io.Reader) error {
	if path == "" {
		_, err := io.Copy(out, r)
		return err
	}
	tmp, err := os.CreateTemp(dirOf(path), ".berth-export-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func dirOf(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		if i == 0 {
			return "/"
		}
		return p[:i]
	}
	return "."
}

func (c *cli) commitCommand() *cobra.Command {
	var message, author string
	var pause bool
	changes := opts.NewListOpts(nil)
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
		Short: "Create a new image from a container's changes",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			o := client.ContainerCommitOptions{Comment: message, Author: author, Changes: changes.GetSlice(), NoPause: !pause}
			if len(args) == 2 {
				o.Reference = args[1]
			}
			res, err := api.ContainerCommit(ctx, args[0], o)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out, res.ID)
			return nil
		},
	}
	cmd.Flags().StringVarP(&message, "message", "m", "", "commit message")
	cmd.Flags().StringVarP(&author, "author", "a", "", `author (e.g., "John Hannibal Smith <hannibal@a-team.com>")`)
	cmd.Flags().BoolVarP(&pause, "pause", "p", true, "pause container during commit")
	cmd.Flags().VarP(&changes, "change", "c", "apply Dockerfile instruction to the created image")
	return cmd
}

func (c *cli) updateCommand() *cobra.Command {
	var memory, memoryReservation opts.MemBytes
	var memorySwap opts.MemSwapBytes
	var cpus opts.NanoCPUs
	var cpuShares, cpuPeriod, cpuQuota, pidsLimit int64
	var cpusetCPUs, restart string
	var blkioWeight uint16
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Update configuration of one or more containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			fl := cmd.Flags()
			if fl.NFlag() == 0 {
				return errors.New("you must provide one or more flags when using this command")
			}
			r := &container.Resources{Memory: memory.Value(), MemoryReservation: memoryReservation.Value(),
				MemorySwap: memorySwap.Value(), NanoCPUs: cpus.Value(), CPUShares: cpuShares, CPUPeriod: cpuPeriod,
				CPUQuota: cpuQuota, CpusetCpus: cpusetCPUs, BlkioWeight: blkioWeight}
			if fl.Changed("pids-limit") {
				r.PidsLimit = &pidsLimit
			}
			o := client.ContainerUpdateOptions{Resources: r}
			if fl.Changed("restart") {
				p, err := parseRestart(restart)
				if err != nil {
					return err
				}
				o.RestartPolicy = &p
			}
			return c.forEach(ctx, args, func(api *client.Client, n string) error {
				res, err := api.ContainerUpdate(ctx, n, o)
				for _, w := range res.Warnings {
					fmt.Fprintln(c.errw, "WARNING:", w)
				}
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.VarP(&memory, "memory", "m", "memory limit")
	fl.Var(&memoryReservation, "memory-reservation", "memory soft limit")
	fl.Var(&memorySwap, "memory-swap", "swap limit equal to memory plus swap: -1 to enable unlimited swap")
	fl.Var(&cpus, "cpus", "number of CPUs")
	fl.Int64VarP(&cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	fl.Int64Var(&cpuPeriod, "cpu-period", 0, "limit CPU CFS period")
	fl.Int64Var(&cpuQuota, "cpu-quota", 0, "limit CPU CFS quota")
	fl.StringVar(&cpusetCPUs, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	fl.Int64Var(&pidsLimit, "pids-limit", 0, "tune container pids limit (set -1 for unlimited)")
	fl.Uint16Var(&blkioWeight, "blkio-weight", 0, "block IO (relative weight), between 10 and 1000, or 0 to disable")
	fl.StringVar(&restart, "restart", "", "restart policy to apply when a container exits")
	return cmd
}

// confirm asks a yes/no question on the terminal, defaulting to no.
func (c *cli) confirm(question string) bool {
	fmt.Fprintf(c.out, "%s\nAre you sure you want to continue? [y/N] ", question)
	line, _ := bufio.NewReader(c.in).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}

// printPruned writes a prune's report as docker does: the heading and what
// was removed (when anything was), then the space reclaimed.
func (c *cli) printPruned(heading string, removed []string, reclaimed uint64) {
	if len(removed) > 0 {
		fmt.Fprintln(c.out, heading)
		for _, r := range removed {
			fmt.Fprintln(c.out, r)
		}
		fmt.Fprintln(c.out)
	}
	fmt.Fprintln(c.out, "Total reclaimed space:", units.HumanSize(float64(reclaimed)))
}

func (c *cli) containerPruneCommand() *cobra.Command {
	var force bool
	filters := opts.NewFilterOpt()
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all stopped containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if !force && !c.confirm("WARNING! This will remove all stopped containers.") {
				return nil
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.ContainerPrune(ctx, client.ContainerPruneOptions{Filters: filters.Value()})
			if err != nil {
				return err
			}
			c.printPruned("Deleted Containers:", res.Report.ContainersDeleted, res.Report.SpaceReclaimed)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().Var(&filters, "filter", "provide filter values (e.g. 'until=<timestamp>')")
	return cmd
}

func (c *cli) containerInspectCommand() *cobra.Command {
	return c.objectInspectCommand("container", "Display detailed information on one or more containers")
}

// objectInspectCommand is `inspect` for containers, images and volumes
// (fixed with kind, or any kind with --type), with docker's -f templates.
func (c *cli) objectInspectCommand(kind, short string) *cobra.Command {
	var format, typ string
	var size bool
	use := "inspect [OPTIONS] NAME|ID [NAME|ID...]"
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if kind != "" {
				typ = kind
			}
			switch typ {
			case "", "container", "image", "volume":
			default:
				return fmt.Errorf("%q is not a valid value for --type", typ)
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			var values []any
			var errs []string
			for _, name := range args {
				raw, err := inspectObject(ctx, api, typ, name, size)
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				values = append(values, raw)
			}
			if err := formatInspect(c.out, format, values); err != nil {
				return err
			}
			if len(errs) > 0 {
				return statusError{code: 1, msg: strings.Join(errs, "\n")}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output using a Go template or 'json'")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "display total file sizes if the type is container")
	if kind == "" {
		cmd.Flags().StringVar(&typ, "type", "", "only inspect objects of the given type (container, image, volume)")
	}
	return cmd
}

// inspectObject fetches one object's raw JSON, trying containers, then
// images, then volumes unless typ names one.
func inspectObject(ctx context.Context, api *client.Client, typ, name string, size bool) (inspected, error) {
	if typ == "" || typ == "container" {
		res, err := api.ContainerInspect(ctx, name, client.ContainerInspectOptions{Size: size})
		if err == nil {
			return newInspected(res.Raw, &container.InspectResponse{}), nil
		}
		if typ != "" || !cerrdefs.IsNotFound(err) {
			return inspected{}, err
		}
	}
	if typ == "" || typ == "image" {
		var raw bytes.Buffer
		_, err := api.ImageInspect(ctx, name, client.ImageInspectWithRawResponse(&raw))
		if err == nil {
			return newInspected(raw.Bytes(), &image.InspectResponse{}), nil
		}
		if typ != "" || !cerrdefs.IsNotFound(err) {
			return inspected{}, err
		}
	}
	if typ == "" || typ == "volume" {
		res, err := api.VolumeInspect(ctx, name, client.VolumeInspectOptions{})
		if err == nil {
			raw, err := json.Marshal(res.Volume)
			return inspected{typed: &res.Volume, raw: raw}, err
		}
		if typ != "" || !cerrdefs.IsNotFound(err) {
			return inspected{}, err
		}
	}
	// Nothing of any type by that name: docker's words for it.
	return inspected{}, fmt.Errorf("Error: No such object: %s", name) //nolint:staticcheck // docker's message, capitalized
}

package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/docker/cli/opts"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// eventTimeFormat is docker's fixed-width RFC 3339 time for event lines.
const eventTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// eventsCommand is `events`: the daemon's events, past ones between
// --since and --until and, unless --until has passed, new ones as they
// come, printed as docker prints them or with --format.
func (c *cli) eventsCommand() *cobra.Command {
	var since, until, format string
	filters := opts.NewFilterOpt()
	cmd := &cobra.Command{
		Use:   "events [OPTIONS]",
		Short: "Get real time events from the server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var tmpl *template.Template
			switch format {
			case "":
			case "json":
				tmpl = template.Must(template.New("events").Funcs(templateFuncs).Parse("{{json .}}"))
			default:
				t, err := template.New("events").Funcs(templateFuncs).Parse(format)
				if err != nil {
					return fmt.Errorf("template parsing error: %w", err)
				}
				tmpl = t
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res := api.Events(ctx, client.EventsListOptions{Since: since, Until: until, Filters: filters.Value()})
			for {
				select {
				case m := <-res.Messages:
					if err := printEvent(c.out, tmpl, m); err != nil {
						return err
					}
				case err := <-res.Err:
					if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
						return nil
					}
					return err
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.VarP(&filters, "filter", "f", "filter output based on conditions provided")
	fl.StringVar(&format, "format", "", "format output using a Go template or 'json'")
	fl.StringVar(&since, "since", "", "show all events created since timestamp")
	fl.StringVar(&until, "until", "", "stream events until this timestamp")
	return cmd
}

// printEvent writes one event with tmpl, or as docker's default line:
// time, type, action, actor ID and the sorted attributes.
func printEvent(out io.Writer, tmpl *template.Template, m events.Message) error {
	if tmpl != nil {
		var b strings.Builder
		if err := tmpl.Execute(&b, m); err != nil {
			return fmt.Errorf("template: %w", err)
		}
		_, err := fmt.Fprintln(out, b.String())
		return err
	}
	var b strings.Builder
	switch {
	case m.TimeNano != 0:
		b.WriteString(time.Unix(0, m.TimeNano).Format(eventTimeFormat) + " ")
	case m.Time != 0:
		b.WriteString(time.Unix(m.Time, 0).Format(eventTimeFormat) + " ")
	}
	fmt.Fprintf(&b, "%s %s %s", m.Type, m.Action, m.Actor.ID)
	if len(m.Actor.Attributes) > 0 {
		keys := make([]string, 0, len(m.Actor.Attributes))
		for k := range m.Actor.Attributes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		attrs := make([]string, len(keys))
		for i, k := range keys {
			attrs[i] = k + "=" + m.Actor.Attributes[k]
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(attrs, ", "))
	}
	_, err := fmt.Fprintln(out, b.String())
	return err
}

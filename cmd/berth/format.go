package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	units "github.com/docker/go-units"
)

// templateFuncs are the functions docker's --format templates offer.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":     strings.Join,
	"split":    strings.Split,
	"lower":    strings.ToLower,
	"upper":    strings.ToUpper,
	"title":    strings.Title, //nolint:staticcheck // docker's templates offer it
	"truncate": func(s string, n int) string { return truncate(s, n) },
	"pad":      func(s string, l, r int) string { return strings.Repeat(" ", l) + s + strings.Repeat(" ", r) },
	"println":  fmt.Sprintln,
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// writeFormatted renders rows with a docker --format string: "table" (the
// default columns), "table TEMPLATE", "json", or a plain TEMPLATE.
// header maps each field a table template uses to its column title.
func writeFormatted(out io.Writer, format, defaultTable string, header map[string]string, rows []any) error {
	switch {
	case format == "" || format == "table":
		format = defaultTable
	case format == "json":
		format = "{{json .}}"
	}
	table := false
	if rest, ok := strings.CutPrefix(format, "table"); ok {
		table, format = true, strings.TrimLeft(rest, " ")
	}
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	tmpl, err := template.New("format").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	var w io.Writer = out
	var tw *tabwriter.Writer
	if table {
		tw = tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)
		w = tw
		// The header is the template run over the column titles.
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, header); err == nil {
			fmt.Fprintln(w, strings.TrimRight(buf.String(), "\n"))
		}
	}
	for _, r := range rows {
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, r); err != nil {
			return fmt.Errorf("template: %w", err)
		}
		fmt.Fprintln(w, strings.TrimRight(buf.String(), "\n"))
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

func humanSize(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }

func since(t time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return "N/A"
	}
	return units.HumanDuration(time.Since(t)) + " ago"
}

func shortID(id string) string {
	return truncate(strings.TrimPrefix(id, "sha256:"), 12)
}

package tests

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestContainersListFormats checks ps's -n, -l, -s, json and table
// formats, ps filters, and inspect across object types.
func TestContainersListFormats(t *testing.T) {
	forEachRuntimeClient(t, func(t *testing.T, e *ctrEnv) {
		e.c.Must(t, "create", "--name", "first", "-l", "tier=a", e.image, "true")
		e.mustRun(t, "-d", "--name", "second", "-l", "tier=b", e.image, "sleep", "1000")
		if out := strings.TrimSpace(e.c.Must(t, "ps", "-l", "--format", "{{.Names}}")); out != "second" {
			t.Errorf("ps -l: %q", out)
		}
		if out := Lines(e.c.Must(t, "ps", "-a", "-n", "2", "--format", "{{.Names}}")); len(out) != 2 || out[0] != "second" || out[1] != "first" {
			t.Errorf("ps -a -n 2 (newest first): %q", out)
		}
		if out := strings.TrimSpace(e.c.Must(t, "ps", "-a", "--filter", "label=tier=a", "--format", "{{.Names}}")); out != "first" {
			t.Errorf("ps --filter label: %q", out)
		}
		if out := strings.TrimSpace(e.c.Must(t, "ps", "-a", "--filter", "status=created", "--format", "{{.Names}}")); out != "first" {
			t.Errorf("ps --filter status=created: %q", out)
		}
		if out := strings.TrimSpace(e.c.Must(t, "ps", "--filter", "name=sec", "--format", "{{.Names}}")); out != "second" {
			t.Errorf("ps --filter name: %q", out)
		}
		var row map[string]any
		if err := json.Unmarshal([]byte(strings.TrimSpace(e.c.Must(t, "ps", "--format", "json"))), &row); err != nil || row["Names"] != "second" || row["State"] != "running" {
			t.Errorf("ps --format json: %v %v", row, err)
		}
		table := Lines(e.c.Must(t, "ps", "--format", "table {{.Names}}\t{{.Labels}}"))
		if len(table) != 2 || !strings.HasPrefix(table[0], "NAMES") || !strings.Contains(table[0], "LABELS") || !strings.Contains(table[1], "tier=b") {
			t.Errorf("ps table format:\n%s", strings.Join(table, "\n"))
		}
		if out := e.c.Must(t, "ps", "-s", "--format", "{{.Names}} {{.Size}}"); !strings.HasPrefix(out, "second ") || !strings.Contains(out, "B") {
			t.Errorf("ps -s: %q", out)
		}
		// inspect finds containers and images, and --type narrows it.
		if out := strings.TrimSpace(e.c.Must(t, "inspect", "-f", "{{.Name}}", "second")); out != "/second" {
			t.Errorf("inspect of a container: %q", out)
		}
		if out := strings.TrimSpace(e.c.Must(t, "inspect", "-f", "{{index .RepoTags 0}}", e.image)); out != e.image {
			t.Errorf("inspect of an image: %q", out)
		}
		e.c.Fails(t, "inspect", "--type", "image", "second")
		if out := strings.TrimSpace(e.c.Must(t, "container", "inspect", "-f", "{{.State.Status}}", "first")); out != "created" {
			t.Errorf("container inspect: %q", out)
		}
	})
}

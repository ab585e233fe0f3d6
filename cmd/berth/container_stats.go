package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// statsRow is one line of berth stats, with docker's template fields.
type statsRow struct {
	ID, Container, Name, CPUPerc, MemUsage, MemPerc, NetIO, BlockIO, PIDs string
}

// statsRowOf computes docker's columns from one stats sample (with its
// previous CPU sample for the CPU percentage).
func statsRowOf(s container.StatsResponse, idOrName string, noTrunc bool) statsRow {
	cpu := 0.0
	cpuDelta := float64(s.CPUStats.CPUUsage.TotalUsage) - float64(s.PreCPUStats.CPUUsage.TotalUsage)
	sysDelta := float64(s.CPUStats.SystemUsage) - float64(s.PreCPUStats.SystemUsage)
	online := float64(s.CPUStats.OnlineCPUs)
	if online == 0 {
		online = float64(len(s.CPUStats.CPUUsage.PercpuUsage))
	}
	if sysDelta > 0 && cpuDelta > 0 {
		cpu = cpuDelta / sysDelta * online * 100
	}
	mem := float64(s.MemoryStats.Usage)
	// Page cache is not the container's own use (docker subtracts it too).
	for _, k := range []string{"total_inactive_file", "inactive_file"} {
		if v, ok := s.MemoryStats.Stats[k]; ok && float64(v) < mem {
			mem -= float64(v)
			break
		}
	}
	limit := float64(s.MemoryStats.Limit)
	memPerc := 0.0
	if limit > 0 {
		memPerc = mem / limit * 100
	}
	var rx, tx float64
	for _, n := range s.Networks {
		rx += float64(n.RxBytes)
		tx += float64(n.TxBytes)
	}
	var rd, wr float64
	for _, e := range s.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			rd += float64(e.Value)
		case "write":
			wr += float64(e.Value)
		}
	}
	id := strings.TrimPrefix(s.ID, "sha256:")
	if !noTrunc {
		id = shortID(id)
	}
	name := strings.TrimPrefix(s.Name, "/")
	return statsRow{ID: id, Container: idOrName, Name: name,
		CPUPerc:  fmt.Sprintf("%.2f%%", cpu),
		MemUsage: units.BytesSize(mem) + " / " + units.BytesSize(limit),
		MemPerc:  fmt.Sprintf("%.2f%%", memPerc),
		NetIO:    units.HumanSizeWithPrecision(rx, 3) + " / " + units.HumanSizeWithPrecision(tx, 3),
		BlockIO:  units.HumanSizeWithPrecision(rd, 3) + " / " + units.HumanSizeWithPrecision(wr, 3),
		PIDs:     fmt.Sprint(s.PidsStats.Current)}
}

var statsHeader = map[string]string{"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
	"MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}

const statsTable = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"

func (c *cli) statsCommand() *cobra.Command {
	var all, noStream, noTrunc bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Display a live stream of container(s) resource usage statistics",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			names := args
			if len(names) == 0 {
				res, err := api.ContainerList(ctx, client.ContainerListOptions{All: all})
				if err != nil {
					return err
				}
				for _, s := range res.Items {
					names = append(names, s.ID)
				}
			}
			if noStream {
				rows, err := c.statsOnce(ctx, api, names, noTrunc)
				if err != nil {
					return err
				}
				return writeFormatted(c.out, format, statsTable, statsHeader, rows)
			}
			return c.statsStream(ctx, api, names, format, noTrunc)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all containers (default shows just running)")
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "disable streaming stats and only pull the first result")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not truncate output")
	cmd.Flags().StringVar(&format, "format", "", "format output using a Go template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')")
	return cmd
}

// statsOnce takes one sample (with the previous one for CPU) per container.
func (c *cli) statsOnce(ctx context.Context, api *client.Client, names []string, noTrunc bool) ([]any, error) {
	rows := make([]any, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := api.ContainerStats(ctx, n, client.ContainerStatsOptions{IncludePreviousSample: true})
			if err != nil {
				errs[i] = err
				return
			}
			defer res.Body.Close()
			var s container.StatsResponse
			if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
				errs[i] = fmt.Errorf("decode stats of %s: %w", n, err)
				return
			}
			rows[i] = statsRowOf(s, n, noTrunc)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rows, nil
}

// statsStream redraws the table each time every container has sent a
// new sample, until interrupted or all streams end.
func (c *cli) statsStream(ctx context.Context, api *client.Client, names []string, format string, noTrunc bool) error {
	type sample struct {
		i   int
		row statsRow
		err error
	}
	ch := make(chan sample)
	for i, n := range names {
		go func() {
			res, err := api.ContainerStats(ctx, n, client.ContainerStatsOptions{Stream: true})
			if err != nil {
				ch <- sample{i: i, err: err}
				return
			}
			defer res.Body.Close()
			dec := json.NewDecoder(res.Body)
			for {
				var s container.StatsResponse
				if err := dec.Decode(&s); err != nil {
					if err == io.EOF || ctx.Err() != nil {
						err = nil
					}
					ch <- sample{i: i, err: fmt.Errorf("stats of %s: %w", n, err)}
					return
				}
				select {
				case ch <- sample{i: i, row: statsRowOf(s, n, noTrunc)}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	rows := make([]any, len(names))
	live := len(names)
	seen := 0
	term := c.outIsTerminal()
	for live > 0 {
		select {
		case <-ctx.Done():
			return nil
		case s := <-ch:
			if s.err != nil {
				live--
				if !strings.HasSuffix(s.err.Error(), "%!w(<nil>)") {
					fmt.Fprintln(c.errw, "berth:", s.err)
				}
				continue
			}
			if rows[s.i] == nil {
				seen++
			}
			rows[s.i] = s.row
			if seen < live {
				continue
			}
			if term {
				fmt.Fprint(c.out, "\033[2J\033[H")
			}
			var present []any
			for _, r := range rows {
				if r != nil {
					present = append(present, r)
				}
			}
			if err := writeFormatted(c.out, format, statsTable, statsHeader, present); err != nil {
				return err
			}
		}
	}
	return nil
}

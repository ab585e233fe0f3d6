package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the Berth version information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			host, _ := c.daemonHost()
			tw := tabwriter.NewWriter(c.out, 0, 1, 1, ' ', 0)
			fmt.Fprintf(tw, "Client:\n Version:\t%s\n Go version:\t%s\n OS/Arch:\t%s/%s\n Host:\t%s\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, host)
			api, err := c.client(ctx)
			if err == nil {
				fmt.Fprintf(tw, " API version:\t%s\n", api.ClientVersion())
			}
			tw.Flush()
			if err != nil {
				return err
			}
			v, err := api.ServerVersion(ctx, client.ServerVersionOptions{})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out)
			tw = tabwriter.NewWriter(c.out, 0, 1, 1, ' ', 0)
			fmt.Fprintf(tw, "Server: %s\n", v.Platform.Name)
			for _, comp := range v.Components {
				fmt.Fprintf(tw, " %s:\n  Version:\t%s\n", comp.Name, comp.Version)
				for _, k := range []string{"ApiVersion", "MinAPIVersion", "GoVersion", "GitCommit", "Os", "Arch", "KernelVersion"} {
					if val, ok := comp.Details[k]; ok && val != "" {
						label := map[string]string{"ApiVersion": "API version", "MinAPIVersion": "Minimum API version", "GoVersion": "Go version", "GitCommit": "Git commit", "KernelVersion": "Kernel version"}[k]
						if label == "" {
							label = k
						}
						fmt.Fprintf(tw, "  %s:\t%s\n", label, val)
					}
				}
			}
			return tw.Flush()
		},
	}
}

func (c *cli) infoCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [OPTIONS]",
		Short: "Display system-wide information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.Info(ctx, client.InfoOptions{})
			if err != nil {
				return err
			}
			i := res.Info
			if format != "" {
				return formatInspectOne(c.out, format, i)
			}
			w := c.out
			fmt.Fprintf(w, "Server:\n")
			fmt.Fprintf(w, " Containers: %d\n  Running: %d\n  Paused: %d\n  Stopped: %d\n", i.Containers, i.ContainersRunning, i.ContainersPaused, i.ContainersStopped)
			fmt.Fprintf(w, " Images: %d\n", i.Images)
			fmt.Fprintf(w, " Server Version: %s\n", i.ServerVersion)
			fmt.Fprintf(w, " Storage Driver: %s\n", i.Driver)
			for _, kv := range i.DriverStatus {
				fmt.Fprintf(w, "  %s: %s\n", kv[0], kv[1])
			}
			fmt.Fprintf(w, " Logging Driver: %s\n", i.LoggingDriver)
			fmt.Fprintf(w, " Cgroup Driver: %s\n Cgroup Version: %s\n", i.CgroupDriver, i.CgroupVersion)
			var rts []string
			for name := range i.Runtimes {
				rts = append(rts, name)
			}
			fmt.Fprintf(w, " Runtimes: %s\n Default Runtime: %s\n", strings.Join(rts, " "), i.DefaultRuntime)
			fmt.Fprintf(w, " Kernel Version: %s\n Operating System: %s\n OSType: %s\n Architecture: %s\n", i.KernelVersion, i.OperatingSystem, i.OSType, i.Architecture)
			fmt.Fprintf(w, " CPUs: %d\n Total Memory: %s\n Name: %s\n ID: %s\n", i.NCPU, humanBinary(i.MemTotal), i.Name, i.ID)
			fmt.Fprintf(w, " Data Root Dir: %s\n Debug Mode: %v\n", i.DockerRootDir, i.Debug)
			if rc := i.RegistryConfig; rc != nil {
				fmt.Fprintf(w, " Insecure Registries:\n")
				for name, ic := range rc.IndexConfigs {
					if !ic.Secure {
						fmt.Fprintf(w, "  %s\n", name)
					}
				}
				for _, cidr := range rc.InsecureRegistryCIDRs {
					fmt.Fprintf(w, "  %s\n", cidr)
				}
				if len(rc.Mirrors) > 0 {
					fmt.Fprintf(w, " Registry Mirrors:\n")
					for _, m := range rc.Mirrors {
						fmt.Fprintf(w, "  %s\n", m)
					}
				}
			}
			for _, warn := range i.Warnings {
				fmt.Fprintln(c.errw, warn)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output using a Go template or 'json'")
	return cmd
}

func humanBinary(n int64) string {
	f := float64(n)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if f < 1024 || u == "TiB" {
			return fmt.Sprintf("%.4g%s", f, u)
		}
		f /= 1024
	}
	return ""
}

func formatInspectOne(out io.Writer, format string, v any) error {
	if format == "json" {
		format = "{{json .}}"
	}
	return formatInspect(out, format, []any{v})
}

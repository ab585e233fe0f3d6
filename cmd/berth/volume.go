package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/docker/cli/opts"
	units "github.com/docker/go-units"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

func (c *cli) volumeGroup() *cobra.Command {
	g := &cobra.Command{Use: "volume", Short: "Manage volumes"}
	g.AddCommand(c.volumeCreateCommand(), c.volumeLsCommand(), c.volumeInspectCommand(), c.volumeRmCommand(), c.volumePruneCommand())
	return g
}

func (c *cli) volumeCreateCommand() *cobra.Command {
	var name, driver string
	labels := opts.NewListOpts(opts.ValidateLabel)
	driverOpts := opts.NewMapOpts(nil, nil)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(args) == 1 {
				if name != "" && name != args[0] {
					return fmt.Errorf("conflicting options: either specify --name or provide positional arg, not both")
				}
				name = args[0]
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.VolumeCreate(ctx, client.VolumeCreateOptions{Name: name, Driver: driver,
				DriverOpts: driverOpts.GetAll(), Labels: opts.ConvertKVStringsToMap(labels.GetSlice())})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out, res.Volume.Name)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "specify volume name")
	_ = fl.MarkHidden("name")
	fl.StringVarP(&driver, "driver", "d", "local", "specify volume driver name")
	fl.Var(&labels, "label", "set metadata for a volume")
	fl.VarP(driverOpts, "opt", "o", "set driver specific options")
	return cmd
}

type volumeRow struct {
	Name, Driver, Scope, Mountpoint, Labels, Size string
	labels                                        map[string]string
}

// Label returns one label's value, as docker's {{.Label "key"}}.
func (r volumeRow) Label(k string) string { return r.labels[k] }

func (c *cli) volumeLsCommand() *cobra.Command {
	var quiet bool
	var format string
	filters := opts.NewFilterOpt()
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.VolumeList(ctx, client.VolumeListOptions{Filters: filters.Value()})
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(c.errw, "WARNING:", w)
			}
			vols := res.Items
			for i := 1; i < len(vols); i++ {
				for j := i; j > 0 && vols[j].Name < vols[j-1].Name; j-- {
					vols[j], vols[j-1] = vols[j-1], vols[j]
				}
			}
			if quiet {
				for _, v := range vols {
					fmt.Fprintln(c.out, v.Name)
				}
				return nil
			}
			rows := make([]any, 0, len(vols))
			for _, v := range vols {
				var lbls []string
				for k, val := range v.Labels {
					lbls = append(lbls, k+"="+val)
				}
				sortStrings(lbls)
				size := "N/A"
				if v.UsageData != nil && v.UsageData.Size >= 0 {
					size = units.HumanSize(float64(v.UsageData.Size))
				}
				rows = append(rows, volumeRow{Name: v.Name, Driver: v.Driver, Scope: v.Scope, Mountpoint: v.Mountpoint,
					Labels: strings.Join(lbls, ","), Size: size, labels: v.Labels})
			}
			header := map[string]string{"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
				"Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Size": "SIZE"}
			return writeFormatted(c.out, format, "table {{.Driver}}\t{{.Name}}", header, rows)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display volume names")
	cmd.Flags().StringVar(&format, "format", "", "format output using a Go template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')")
	cmd.Flags().VarP(&filters, "filter", "f", "provide filter values (e.g. 'dangling=true')")
	return cmd
}

func (c *cli) volumeInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] VOLUME [VOLUME...]",
		Short: "Display detailed information on one or more volumes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			var values []any
			var errs []string
			for _, n := range args {
				res, err := api.VolumeInspect(ctx, n, client.VolumeInspectOptions{})
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				b, err := json.Marshal(res.Volume)
				if err != nil {
					return err
				}
				values = append(values, inspected{typed: &res.Volume, raw: b})
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
	return cmd
}

func (c *cli) volumeRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more volumes",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return c.forEach(ctx, args, func(api *client.Client, n string) error {
				_, err := api.VolumeRemove(ctx, n, client.VolumeRemoveOptions{Force: force})
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "force the removal of one or more volumes")
	return cmd
}

func (c *cli) volumePruneCommand() *cobra.Command {
	var force, all bool
	filters := opts.NewFilterOpt()
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused local volumes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			q := "WARNING! This will remove anonymous local volumes not used by at least one container."
			if all {
				q = "WARNING! This will remove all local volumes not used by at least one container."
			}
			if !force && !c.confirm(q) {
				return nil
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			res, err := api.VolumePrune(ctx, client.VolumePruneOptions{All: all, Filters: filters.Value()})
			if err != nil {
				return err
			}
			c.printPruned("Deleted Volumes:", res.Report.VolumesDeleted, res.Report.SpaceReclaimed)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all unused volumes, not just anonymous ones")
	cmd.Flags().Var(&filters, "filter", "provide filter values (e.g. 'label=<label>')")
	return cmd
}

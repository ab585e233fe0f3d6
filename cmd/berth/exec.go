package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/docker/cli/opts"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func (c *cli) execCommand() *cobra.Command {
	var interactive, tty, detach, privileged bool
	var workdir, user, detachKeys string
	env := opts.NewListOpts(opts.ValidateEnv)
	envFile := opts.NewListOpts(nil)
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			envs, err := opts.ReadKVEnvStrings(envFile.GetSlice(), env.GetSlice())
			if err != nil {
				return fmt.Errorf("read env file: %w", err)
			}
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return err
			}
			if tty && interactive && !detach && !c.inIsTerminal() {
				return statusError{code: 1, msg: "the input device is not a TTY"}
			}
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			o := client.ExecCreateOptions{User: user, Privileged: privileged, TTY: tty, Env: envs, WorkingDir: workdir,
				Cmd: args[1:], DetachKeys: detachKeys}
			if !detach {
				o.AttachStdin, o.AttachStdout, o.AttachStderr = interactive, true, true
			}
			var size client.ConsoleSize
			if tty {
				if f, ok := c.out.(*os.File); ok {
					if w, h, err := term.GetSize(int(f.Fd())); err == nil {
						size = client.ConsoleSize{Height: uint(h), Width: uint(w)}
						o.ConsoleSize = size
					}
				}
			}
			created, err := api.ExecCreate(ctx, args[0], o)
			if err != nil {
				return err
			}
			if detach {
				_, err := api.ExecStart(ctx, created.ID, client.ExecStartOptions{Detach: true, TTY: tty, ConsoleSize: size})
				return err
			}
			sctx := context.WithoutCancel(ctx)
			resp, err := api.ExecAttach(sctx, created.ID, client.ExecAttachOptions{TTY: tty, ConsoleSize: size})
			if err != nil {
				return startError(err)
			}
			defer resp.Close()
			if tty && c.outIsTerminal() {
				stop := c.monitorSize(sctx, func(h, w uint) error {
					_, err := api.ExecResize(sctx, created.ID, client.ExecResizeOptions{Height: h, Width: w})
					return err
				})
				defer stop()
			}
			var in io.Reader
			if interactive {
				in = c.in
			}
			detached, err := c.stream(ctx, resp.HijackedResponse, streamOptions{tty: tty, stdin: in, stdout: c.out, stderr: c.errw, detachKeys: keys})
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return statusError{code: 130}
				}
				return err
			}
			if detached {
				return nil
			}
			res, err := api.ExecInspect(sctx, created.ID, client.ExecInspectOptions{})
			if err != nil {
				return err
			}
			if res.ExitCode != 0 {
				return statusError{code: res.ExitCode}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&interactive, "interactive", "i", false, "keep STDIN open even if not attached")
	fl.BoolVarP(&tty, "tty", "t", false, "allocate a pseudo-TTY")
	fl.BoolVarP(&detach, "detach", "d", false, "detached mode: run command in the background")
	fl.BoolVar(&privileged, "privileged", false, "give extended privileges to the command")
	fl.VarP(&env, "env", "e", "set environment variables")
	fl.Var(&envFile, "env-file", "read in a file of environment variables")
	fl.StringVarP(&workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&user, "user", "u", "", "username or UID (format: <name|uid>[:<group|gid>])")
	fl.StringVar(&detachKeys, "detach-keys", "", "override the key sequence for detaching a container")
	return cmd
}

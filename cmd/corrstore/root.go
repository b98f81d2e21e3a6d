package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() {
	// corrstore help lists the commands in the order of newRoot: serve
	// first, then the operator commands from reading to writing.
	cobra.EnableCommandSorting = false
}

const rootAbout = `corrstore is a durable correlation store for asynchronous request-reply.`

const rootFooter = `
The operator commands work on a running server (--server http://HOST:PORT, token from
--token-file or CORRSTORE_TOKEN) or directly on a store (--store bolt://PATH, redis://…).
A correlation is an ID in a namespace: give --namespace NS (-n) or NS/ID; without
either, the namespace is "default" (on --server: the token's, when it has only one).
Flags go before or after the arguments, as --flag value or --flag=value.
Run 'corrstore COMMAND --help' for a command's flags; docs/OPERATIONS.md has the runbook.
`

// newRoot is the corrstore command with every subcommand, talking to e.
// Every command parses flags and reports errors the same way (see
// setupCommand), serve included.
func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:     "corrstore",
		Short:   rootAbout,
		Version: buildVersion().String(),
	}
	root.SuggestionsMinimumDistance = 2
	setupCommand(root, e)
	root.AddCommand(
		newServeCmd(e),
		newLsCmd(e),
		newShowCmd(e),
		newStatsCmd(e),
		newExpireCmd(e),
		newCancelCmd(e),
		newExtendCmd(e),
		newRedispatchCmd(e),
		newReapCmd(e),
		newExportCmd(e),
		newImportCmd(e),
		newBenchCmd(e),
		newUpgradeCmd(e),
		newVersionCmd(e),
	)
	root.SetVersionTemplate("corrstore {{.Version}}\n")
	// The help and completion commands are made here rather than by
	// Execute, so that help lists them and checkCommand knows them.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Use, c.Short = "help [COMMAND]", "what a command does, its flags and environment"
			c.Run, c.RunE = nil, func(cmd *cobra.Command, args []string) error {
				target, rest, err := root.Find(args)
				if err != nil || len(rest) > 0 {
					return fmt.Errorf("no command %q; run 'corrstore help'", strings.Join(args, " "))
				}
				target.HelpFunc()(target, nil)
				return nil
			}
		case "completion":
			c.Use, c.Short = "completion bash|zsh|fish|powershell", "shell completion of commands, flags and values"
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(_ *cobra.Command, args []string) error {
				if len(args) == 0 {
					return errors.New("give the shell: bash, zsh, fish or powershell")
				}
				return fmt.Errorf("%q: want bash, zsh, fish or powershell", args[0])
			}
		}
	}
	return root
}

// setupCommand gives cmd (a root, or serve on its own in Main.ParseFlags)
// corrstore's conventions, which its subcommands inherit: streams from e;
// a bad flag or value is one line (flagParseError), never a usage dump;
// flags not given take their CORRSTORE_* variable (applyEnv); help as
// helpText writes it.
func setupCommand(cmd *cobra.Command, e *env) {
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetOut(e.stdout)
	cmd.SetErr(e.stderr)
	cmd.SetIn(e.stdin)
	cmd.SetFlagErrorFunc(flagParseError)
	cmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return applyEnv(cmd, e.getenv) }
	cmd.SetHelpFunc(func(cmd *cobra.Command, _ []string) { helpText(cmd.OutOrStdout(), cmd) })
}

// checkCommand refuses an unknown command in one line, with cobra's
// suggestion when it has one.
func checkCommand(root *cobra.Command, name string) error {
	switch {
	case strings.HasPrefix(name, "-"):
		return nil // a flag of the root: --help, --version
	case name == cobra.ShellCompRequestCmd || name == cobra.ShellCompNoDescRequestCmd:
		return nil // the completion scripts ask through these
	}
	for _, c := range root.Commands() {
		if c.Name() == name || slices.Contains(c.Aliases, name) {
			return nil
		}
	}
	if s := root.SuggestionsFor(name); len(s) > 0 {
		return fmt.Errorf("unknown command %q (did you mean %s?); run 'corrstore --help'", name, strings.Join(s, " or "))
	}
	return fmt.Errorf("unknown command %q; run 'corrstore --help'", name)
}

// helpText writes a command's help: its usage line, what it does, its
// flags and the environment variables it reads. The root's lists the
// commands instead.
func helpText(w io.Writer, cmd *cobra.Command) {
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintf(w, "%s\n\nUsage:\n", strings.TrimSpace(cmp.Or(cmd.Long, cmd.Short)))
		tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() || c.Name() == "help" {
				fmt.Fprintf(tw, "  %s\t%s\n", usageLine(c), c.Short)
			}
		}
		tw.Flush()
		if !cmd.HasParent() {
			fmt.Fprint(w, rootFooter)
		}
		return
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", usageLine(cmd), strings.TrimSpace(cmp.Or(cmd.Long, cmd.Short)))
	if fl := cmd.LocalFlags(); fl.HasAvailableFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fl.FlagUsages())
	}
	if vars := envVars(cmd); len(vars) > 0 {
		fmt.Fprintln(w, "\nEnvironment (a flag given on the command line wins):")
		tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
		for _, v := range vars {
			fmt.Fprintf(tw, "  %s\t%s\n", v[0], v[1])
		}
		tw.Flush()
	}
}

// usageLine is "corrstore ls [flags]": the command's path and the
// arguments its Use gives.
func usageLine(cmd *cobra.Command) string {
	_, args, _ := strings.Cut(cmd.Use, " ")
	return strings.TrimSpace(cmd.CommandPath() + " " + args)
}

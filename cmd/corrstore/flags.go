package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newCommand is a subcommand: use is "name ARGS" as the usage line shows
// it, summary its line in corrstore help, about its help text. The caller
// adds the flags and RunE.
func newCommand(use, summary, about string) *cobra.Command {
	return &cobra.Command{Use: use, Short: summary, Long: about, DisableFlagsInUseLine: true}
}

// noArgs refuses positional arguments in one line.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", cmd.Name(), args)
	}
	return nil
}

// flagParseError makes pflag's errors one line that names the flag as
// users type it and says what was wrong. pflag's errors are typed, so this
// reads their fields; it never parses their text.
func flagParseError(cmd *cobra.Command, err error) error {
	var (
		bad     *pflag.InvalidValueError
		missing *pflag.ValueRequiredError
		unknown *pflag.NotExistError
		syntax  *pflag.InvalidSyntaxError
	)
	switch {
	case errors.As(err, &bad):
		return valueError("--"+bad.GetFlag().Name, bad.GetFlag(), bad.GetValue(), errors.Unwrap(bad))
	case errors.As(err, &missing):
		return fmt.Errorf("--%s needs a value (see %s -h)", missing.GetFlag().Name, cmd.CommandPath())
	case errors.As(err, &unknown):
		name := unknown.GetSpecifiedName()
		if unknown.GetSpecifiedShortnames() != "" {
			return fmt.Errorf("unknown flag -%s (see %s -h)", name, cmd.CommandPath())
		}
		if why, ok := cmd.Annotations[refusedFlag+name]; ok {
			return fmt.Errorf("--%s: %s", name, why)
		}
		return fmt.Errorf("unknown flag --%s (see %s -h)", printable(name), cmd.CommandPath())
	case errors.As(err, &syntax):
		return fmt.Errorf("bad flag syntax %q (see %s -h)", syntax.GetSpecifiedFlag(), cmd.CommandPath())
	}
	return err
}

// refusedFlag+NAME in a command's Annotations explains why the command has
// no --NAME, for a flag its neighbours take (export has no --server).
const refusedFlag = "corrstore/refused:"

// refuseFlag records why cmd takes no --name.
func refuseFlag(cmd *cobra.Command, name, why string) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[refusedFlag+name] = why
}

// valueError is the one line for a value a flag (or its environment
// variable, named where) refused: what a standard flag wants, or what a
// flag of our own said in its Set error.
func valueError(where string, f *pflag.Flag, value string, cause error) error {
	var num *strconv.NumError
	outOfRange := errors.As(cause, &num) && errors.Is(num.Err, strconv.ErrRange)
	var want string
	switch f.Value.Type() {
	case "duration":
		want = "a duration like 30s, 5m or 1h30m"
	case "int", "int64", "int32", "uint", "uint64", "uint32":
		want = "a whole number"
	case "float64", "float32":
		want = "a number"
	case "bool":
		want = "true or false"
	}
	switch {
	case want != "" && outOfRange:
		return fmt.Errorf("%s: %q is out of range for %s", where, value, want)
	case want != "":
		return fmt.Errorf("%s: %q is not %s", where, value, want)
	}
	return fmt.Errorf("%s: %q: %v", where, value, cause)
}

// envAnnotation on a flag names the environment variable that gives its
// value when the command line does not.
const envAnnotation = "corrstore/env"

// bindEnv makes the environment variable the default of --name.
func bindEnv(fs *pflag.FlagSet, name, variable string) {
	if err := fs.SetAnnotation(name, envAnnotation, []string{variable}); err != nil {
		panic(err) // a flag name misspelt in this file
	}
}

// bindEnvAll binds every flag of fs to CORRSTORE_NAME (--reaper-interval:
// CORRSTORE_REAPER_INTERVAL).
func bindEnvAll(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" {
			bindEnv(fs, f.Name, "CORRSTORE_"+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")))
		}
	})
}

// envDoc lists an environment variable that no flag takes in cmd's help.
func envDoc(cmd *cobra.Command, variable, what string) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[envAnnotation+":"+variable] = what
}

// applyEnv sets each flag the command line did not give from its
// environment variable (an empty one counts as unset).
func applyEnv(cmd *cobra.Command, getenv func(string) string) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		vars := f.Annotations[envAnnotation]
		if err != nil || f.Changed || len(vars) == 0 {
			return
		}
		if v := getenv(vars[0]); v != "" {
			if serr := f.Value.Set(v); serr != nil {
				err = valueError(vars[0], f, v, serr)
			}
		}
	})
	return err
}

// envVars are the environment variables cmd reads, with what each gives,
// sorted by name.
func envVars(cmd *cobra.Command) [][2]string {
	var vars [][2]string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if v := f.Annotations[envAnnotation]; len(v) > 0 {
			vars = append(vars, [2]string{v[0], "--" + f.Name})
		}
	})
	for k, what := range cmd.Annotations {
		if v, ok := strings.CutPrefix(k, envAnnotation+":"); ok {
			vars = append(vars, [2]string{v, what})
		}
	}
	slices.SortFunc(vars, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return vars
}

// namespaceFlag adds --namespace and its short form -n.
func namespaceFlag(fs *pflag.FlagSet, p *string, value, usage string) {
	fs.StringVarP(p, "namespace", "n", value, usage)
}

const idsNamespaceUsage = `namespace of the IDs (default "default"; on --server, a token's namespace when it has only one); an argument NS/ID names its own`

// completeWith makes the shell complete --name with values.
func completeWith(cmd *cobra.Command, name string, values ...string) {
	if err := cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp)); err != nil {
		panic(err) // a flag name misspelt in this file
	}
}

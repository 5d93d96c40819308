package main

// greyd's own flags, its subcommands, and greyd help.

import (
	"flag"
	"fmt"
	"io"
)

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
	// helpArgs make run print its usage and exit 0: "-h", but
	// whitelist reads its verb first.
	helpArgs []string
}

// commands are greyd's subcommands, in the order greyd -h lists them.
// help is not among them: it lists them.
var commands = []command{
	{name: "check-config", summary: "validate the configuration and whitelists; print the effective configuration", run: checkConfig},
	{name: "explain", summary: "what greyd would answer a request now, step by step; writes nothing", run: adminCommands["explain"]},
	{name: "list", summary: "the triplets and auto-whitelisted clients greyd remembers", run: adminCommands["list"]},
	{name: "delete", summary: "forget triplets and auto-whitelist entries", run: adminCommands["delete"]},
	{name: "whitelist", summary: "add, remove or list runtime whitelist entries", run: adminCommands["whitelist"], helpArgs: []string{"list", "-h"}},
	{name: "stats", summary: "counters, database health, last reload", run: adminCommands["stats"]},
	{name: "report", summary: "the mail log's greylisted triplets never retried, as postgreyreport", run: adminCommands["report"]},
	{name: "export", summary: "the running greyd's state as NDJSON, or as Postgrey's db_dump text", run: adminCommands["export"]},
	{name: "import", summary: "NDJSON from greyd export into the running greyd", run: adminCommands["import"]},
	{name: "import-postgrey", summary: "Postgrey's database into greyd; its options as a greyd.hcl fragment", run: importPostgrey},
	{name: "export-postgrey", summary: "greyd's database (greyd stopped) as Postgrey's db_dump text", run: exportPostgrey},
}

func findCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			if c.helpArgs == nil {
				c.helpArgs = []string{"-h"}
			}
			return c, true
		}
	}
	return command{}, false
}

// isHelp reports whether arg asks the flag package for the usage.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}

// usage is the head of greyd -h: the synopsis and the commands.
func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: greyd [-config PATH]          serve (as the systemd unit runs it)\n"+
		"       greyd COMMAND [-config PATH] ...\n"+
		"       greyd help [COMMAND]             a command's usage, as greyd COMMAND -h\n"+
		"       greyd -version\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-16s %s\n\nflags:\n", "help", "this text, or a command's usage")
}

// help is greyd help [COMMAND]: the usage on stdout, exit 0.
func help(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		newDaemonFlags(stdout).fs.Usage()
		return exitOK
	case len(args) > 1:
		fmt.Fprintf(stderr, "greyd help: one command at a time; usage: greyd help [COMMAND]\n")
		return exitConfig
	case args[0] == "help":
		fmt.Fprintf(stdout, "usage: greyd help [COMMAND]\n")
		return exitOK
	}
	c, ok := findCommand(args[0])
	if !ok {
		fmt.Fprintf(stderr, "greyd help: unknown command %q; greyd help lists the commands\n", args[0])
		return exitConfig
	}
	return c.run(c.helpArgs, stdout, stdout)
}

// daemonFlags are greyd's own flags, without a command.
type daemonFlags struct {
	fs             *flag.FlagSet
	path           *string
	check, version *bool
}

// newDaemonFlags returns greyd's flags, whose usage goes to w.
func newDaemonFlags(w io.Writer) *daemonFlags {
	fs := flag.NewFlagSet("greyd", flag.ContinueOnError)
	fs.SetOutput(w)
	f := &daemonFlags{
		fs:      fs,
		path:    fs.String("config", defaultConfig, "configuration `path`: a file, or a directory whose *.hcl and conf.d/*.hcl files are read (later files override earlier ones)"),
		check:   fs.Bool("check-config", false, "validate the configuration and whitelist files, print the effective configuration, and exit"),
		version: fs.Bool("version", false, "print the version and exit"),
	}
	fs.Usage = func() {
		usage(w)
		fs.PrintDefaults()
	}
	return f
}

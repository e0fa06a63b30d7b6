package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/tattlefw/tattle/shared/api"
)

func cmdLearn(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("learn")
	noInteractive := fs.Bool("no-interactive", false, "never ask for a password")
	pos, err := parseFlags(e, "learn", fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give how long to learn, such as 10m or 30s")
	}
	d, err := time.ParseDuration(pos[0])
	if err != nil || d < time.Second || d > api.MaxLearnSeconds*time.Second || d%time.Second != 0 {
		return usagef("%q is not a duration of whole seconds from 1s to 24h (such as 10m)", pos[0])
	}
	err = e.withHelper(true, *noInteractive, func(h Helper) error { return h.Learn(ctx, uint32(d/time.Second)) })
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "learning until %s; then back to alert. Review with 'tattlectl rules learned'.\n",
		e.now().Add(d).Format("15:04:05"))
	return nil
}

// learnedGroup is one program's proposals (the --json form of "rules learned").
type learnedGroup struct {
	Application string     `json:"application"`
	Via         string     `json:"via,omitempty"`
	Rules       []ruleJSON `json:"rules"`
}

// groupLearned returns the learned proposals of rs by program, in path order.
func groupLearned(rs []api.Rule) ([]learnedGroup, error) {
	byApp := map[[2]string]*learnedGroup{}
	var out []learnedGroup
	for _, wr := range rs {
		if !wr.Learned {
			continue
		}
		r, ok := wr.ToRule()
		if !ok {
			return nil, fmt.Errorf("tattled sent rule %q with owner %d, which is not a user id", wr.ID, wr.Owner)
		}
		k := [2]string{wr.Application, wr.Via}
		g := byApp[k]
		if g == nil {
			g = &learnedGroup{Application: wr.Application, Via: wr.Via}
			byApp[k] = g
		}
		g.Rules = append(g.Rules, ruleJSON{Rule: r, Source: wr.Source})
	}
	for _, g := range byApp {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Application != out[j].Application {
			return out[i].Application < out[j].Application
		}
		return out[i].Via < out[j].Via
	})
	return out, nil
}

func cmdRulesLearned(ctx context.Context, e *env, args []string) error {
	verb := ""
	if len(args) > 0 && (args[0] == "approve" || args[0] == "discard") {
		verb, args = args[0], args[1:]
	}
	fs := newFlagSet("rules learned")
	asJSON := fs.Bool("json", false, "print JSON (programs and their proposals) instead of a table")
	all := fs.Bool("all", false, "approve or discard every program's proposals")
	app := fs.String("app", "", "approve or discard the proposals of this program (its path, or its script's)")
	noInteractive := fs.Bool("no-interactive", false, "never ask for a password")
	if err := noArgs(e, "rules learned", fs, args); err != nil {
		return err
	}
	switch {
	case verb == "" && (*all || *app != ""):
		return usagef("--all and --app go with approve or discard")
	case verb != "" && *all == (*app != ""):
		return usagef("%s needs --all or --app PATH", verb)
	case verb != "" && *asJSON:
		return usagef("--json is for the list")
	}
	if *app != "" && !filepath.IsAbs(*app) {
		wd, err := e.getwd()
		if err != nil {
			return err
		}
		*app = filepath.Join(wd, *app)
	}
	return e.withHelper(verb != "", *noInteractive, func(h Helper) error {
		rs, err := h.Rules(ctx)
		if err != nil {
			return err
		}
		groups, err := groupLearned(rs)
		switch {
		case err != nil:
			return err
		case verb == "" && *asJSON:
			return writeLearnedJSON(e.stdout, groups)
		case verb == "":
			return writeLearned(e, groups)
		}
		return settleLearned(ctx, e, h, verb, groups, *all, *app)
	})
}

// settleLearned approves or discards (verb) the proposals of every program (all) or of app.
func settleLearned(ctx context.Context, e *env, h Helper, verb string, groups []learnedGroup, all bool, app string) error {
	var ids []string
	for _, g := range groups {
		if all || g.Application == filepath.Clean(app) || g.Via == filepath.Clean(app) {
			for _, r := range g.Rules {
				ids = append(ids, r.ID)
			}
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("no learned proposals%s ('tattlectl rules learned' lists them)", forApp(app))
	}
	for start := 0; start < len(ids); start += api.MaxRulesPerCall {
		part := ids[start:min(start+api.MaxRulesPerCall, len(ids))]
		var err error
		if verb == "approve" {
			err = h.Approve(ctx, part)
		} else {
			err = h.RemoveRules(ctx, part)
		}
		if err != nil {
			return err
		}
	}
	done := "approved (enabled)"
	if verb == "discard" {
		done = "discarded"
	}
	fmt.Fprintf(e.stdout, "%d %s %s\n", len(ids), plural(len(ids), "proposal", "proposals"), done)
	return nil
}

func forApp(app string) string {
	if app == "" {
		return ""
	}
	return " for " + app
}

func writeLearnedJSON(w io.Writer, groups []learnedGroup) error {
	if groups == nil {
		groups = []learnedGroup{}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(groups)
}

func writeLearned(e *env, groups []learnedGroup) error {
	if len(groups) == 0 {
		fmt.Fprintln(e.stdout, "No learned proposals.")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	for _, g := range groups {
		fmt.Fprintf(tw, "%s (%d)\n", cell(appLabel(g.Application, g.Via)), len(g.Rules))
		for _, r := range g.Rules {
			owner := "system"
			if r.Owner != nil {
				owner = e.userLabel(*r.Owner)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", cell(r.ID), cell(r.Remote), cell(r.Port), cell(r.Protocol), owner)
		}
	}
	return tw.Flush()
}

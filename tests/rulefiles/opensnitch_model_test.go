package rulefiles

// An implementation of OpenSnitch's rule matching written from its documentation (the rules wiki: "rules
// are checked in alphabetical order", "evaluated until a rule with a Deny/Reject action is found, or a rule
// with Priority", case-insensitive comparisons by default, regular expressions, networks, lists and the
// list-directory formats), independent of the importer: it shares no code with shared/rules and reads
// the rule files itself. It is the reference the imported Tattle rules are held against.

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

type osmOp struct {
	Type      string  `json:"type"`
	Operand   string  `json:"operand"`
	Sensitive bool    `json:"sensitive"`
	Data      string  `json:"data"`
	List      []osmOp `json:"list"`

	re    *regexp.Regexp
	cidr  *net.IPNet
	set   map[string]bool
	cidrs []*net.IPNet
}

type osmRule struct {
	Name       string `json:"name"`
	Enabled    bool   `json:"enabled"`
	Precedence bool   `json:"precedence"`
	Action     string `json:"action"`
	Operator   osmOp  `json:"operator"`
}

// osmFlow is a connection as OpenSnitch sees it.
type osmFlow struct {
	path  string
	uid   uint32
	ip    net.IP
	host  string // the name the connection's address was resolved from; "" when none
	port  uint16
	proto string // "tcp", "udp"; OpenSnitch says tcp6/udp6 for IPv6
}

// osmLoad reads a rules directory; listDir maps the directories rules name to where their files are.
func osmLoad(dir string, listDir func(string) string) ([]*osmRule, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	byName := map[string]*osmRule{}
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		r := &osmRule{}
		if err := json.Unmarshal(data, r); err != nil {
			continue // not loaded
		}
		if !osmCompile(&r.Operator, listDir) {
			continue // OpenSnitch refuses to load a rule whose operator does not compile
		}
		byName[r.Name] = r // a later file with the same name replaces the rule
	}
	var out []*osmRule
	for _, r := range byName {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func osmCompile(op *osmOp, listDir func(string) string) bool {
	if op.Type == "list" {
		if len(op.List) == 0 && op.Data != "" {
			// The older form: the members as JSON text in data (read for its intended meaning).
			if json.Unmarshal([]byte(op.Data), &op.List) != nil {
				return false
			}
		}
		for i := range op.List {
			if !osmCompile(&op.List[i], listDir) {
				return false
			}
		}
		return true
	}
	switch op.Type {
	case "regexp":
		d := op.Data
		if !op.Sensitive {
			d = strings.ToLower(d)
		}
		re, err := regexp.Compile(d)
		if err != nil {
			return false
		}
		op.re = re
	case "network":
		_, n, err := net.ParseCIDR(op.Data)
		if err != nil {
			return false
		}
		op.cidr = n
	case "lists":
		op.set = map[string]bool{}
		files, _ := filepath.Glob(filepath.Join(listDir(op.Data), "*.*"))
		for _, f := range files {
			if strings.HasPrefix(filepath.Base(f), ".") {
				continue
			}
			raw, _ := os.ReadFile(f)
			for _, line := range strings.Split(string(raw), "\n") {
				switch op.Operand {
				case "lists.domains":
					// hosts-file lines only: "0.0.0.0 name" or "127.0.0.1 name"
					var host string
					if strings.HasPrefix(line, "0.0.0.0 ") {
						host = line[len("0.0.0.0 "):]
					} else if strings.HasPrefix(line, "127.0.0.1 ") {
						host = line[len("127.0.0.1 "):]
					} else {
						continue
					}
					host = strings.TrimSpace(host)
					if host != "localhost" && host != "local" && host != "localhost.localdomain" && host != "broadcasthost" {
						op.set[host] = true
					}
				case "lists.ips":
					if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
						op.set[l] = true
					}
				case "lists.nets":
					if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
						if _, n, err := net.ParseCIDR(l); err == nil {
							op.cidrs = append(op.cidrs, n)
						}
					}
				}
			}
		}
	}
	return true
}

// osmDecide: in name order, the first enabled matching rule that denies, rejects or has precedence
// decides; otherwise the last matching allow does; otherwise nothing does ("").
func osmDecide(rules []*osmRule, f osmFlow) string {
	var match *osmRule
	for _, r := range rules {
		if !r.Enabled || !osmMatch(&r.Operator, f) {
			continue
		}
		match = r
		if r.Action == "deny" || r.Action == "reject" || r.Precedence {
			break
		}
	}
	switch {
	case match == nil:
		return ""
	case match.Action == "reject":
		return "deny"
	}
	return match.Action
}

func osmMatch(op *osmOp, f osmFlow) bool {
	if op.Operand == "true" {
		return true
	}
	if op.Type == "list" {
		for i := range op.List {
			if !osmMatch(&op.List[i], f) {
				return false
			}
		}
		return true
	}
	proto := f.proto
	if f.ip.To4() == nil {
		proto += "6"
	}
	value := map[string]string{
		"process.path": f.path, "user.id": strconv.Itoa(int(f.uid)), "dest.ip": f.ip.String(), "dest.host": f.host,
		"dest.port": strconv.Itoa(int(f.port)), "protocol": proto,
	}
	switch op.Type {
	case "network":
		return op.cidr.Contains(f.ip)
	case "lists":
		switch op.Operand {
		case "lists.domains":
			h := f.host
			if !op.Sensitive {
				h = strings.ToLower(h)
			}
			return h != "" && op.set[h]
		case "lists.ips":
			return op.set[f.ip.String()]
		case "lists.nets":
			for _, n := range op.cidrs {
				if n.Contains(f.ip) {
					return true
				}
			}
		}
		return false
	}
	v, known := value[op.Operand]
	if !known || op.Operand == "dest.host" && v == "" {
		return false
	}
	switch op.Type {
	case "simple":
		if op.Sensitive {
			return v == op.Data
		}
		return strings.EqualFold(v, op.Data)
	case "regexp":
		if !op.Sensitive {
			v = strings.ToLower(v)
		}
		return op.re.MatchString(v)
	}
	return false
}

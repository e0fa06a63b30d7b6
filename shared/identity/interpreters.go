package identity

import (
	"crypto/sha256"
	"encoding/binary"
	"path"
	"strings"
)

// InterpreterKind names a family of interpreters that read their arguments alike. The kernel programs carry it
// (vias, interp_opts): the values are part of the kernel contract.
type InterpreterKind uint32

const (
	Python InterpreterKind = 1 + iota
	Node
	Perl
	Ruby
	Shell
	PHP
	Lua
	R
	Java
)

// Interpreter says how one kind of interpreter is started on a script.
type Interpreter struct {
	Kind InterpreterKind
	Name string // for people: "python", "node" …
	// Names are the executable names (path.Match patterns over the file's own name, after symlinks).
	Names []string
	// NoScript are options that make the program text come from elsewhere (-c CODE, -e CODE, -m MODULE):
	// given before any script, the process runs no script file.
	NoScript []string
	// WithArg are options that take the next argument as their value (when not given as -Xvalue or --opt=value).
	WithArg []string
	// ScriptOpt are options whose value is the script (php -f FILE, java -jar FILE).
	ScriptOpt []string
	// ScriptOnlyByOpt: the first non-option argument is not a script (java runs a class by name).
	ScriptOnlyByOpt bool
}

// Interpreters is the one list of interpreters whose processes Tattle identifies by their script ("via").
func Interpreters() []Interpreter {
	return []Interpreter{
		{Kind: Python, Name: "python", Names: []string{"python", "python[0-9]*", "pypy", "pypy[0-9]*"},
			NoScript: []string{"-c", "-m", "-"}, WithArg: []string{"-W", "-X", "--check-hash-based-pycs"}},
		{Kind: Node, Name: "node", Names: []string{"node", "nodejs"},
			NoScript: []string{"-e", "--eval", "-p", "--print", "-"},
			WithArg:  []string{"-r", "--require", "--import", "--loader", "--experimental-loader", "-C", "--conditions", "--title", "--input-type"}},
		{Kind: Perl, Name: "perl", Names: []string{"perl", "perl5*"},
			NoScript: []string{"-e", "-E", "-"}, WithArg: []string{"-I", "-M", "-m"}},
		{Kind: Ruby, Name: "ruby", Names: []string{"ruby", "ruby[0-9]*"},
			NoScript: []string{"-e", "-"}, WithArg: []string{"-I", "-r", "-C", "-E", "--encoding"}},
		{Kind: Shell, Name: "shell", Names: []string{"sh", "bash", "dash", "zsh", "ksh", "mksh"},
			NoScript: []string{"-c", "-s", "-i", "-"}, WithArg: []string{"-o", "+o", "-O", "+O", "--rcfile", "--init-file"}},
		{Kind: PHP, Name: "php", Names: []string{"php", "php[0-9]*"},
			NoScript: []string{"-r", "-a", "-S", "-"}, WithArg: []string{"-c", "-d", "-z", "-t"}, ScriptOpt: []string{"-f"}},
		{Kind: Lua, Name: "lua", Names: []string{"lua", "lua[0-9]*", "luajit"},
			NoScript: []string{"-e", "-"}, WithArg: []string{"-l"}},
		{Kind: R, Name: "R", Names: []string{"Rscript"},
			NoScript: []string{"-e"}, WithArg: []string{"--default-packages"}},
		{Kind: Java, Name: "java", Names: []string{"java"},
			WithArg: []string{"-cp", "-classpath", "--class-path", "-p", "--module-path", "--add-modules",
				"--add-opens", "--add-exports", "--add-reads", "--patch-module", "--upgrade-module-path", "-m", "--module"},
			ScriptOpt: []string{"-jar"}, ScriptOnlyByOpt: true},
	}
}

// InterpreterNamed returns the interpreter an executable file name (no directory) belongs to.
func InterpreterNamed(name string) (Interpreter, bool) {
	for _, in := range Interpreters() {
		for _, pat := range in.Names {
			if ok, _ := path.Match(pat, name); ok && !strings.HasSuffix(name, "-config") {
				return in, true
			}
		}
	}
	return Interpreter{}, false
}

// InterpreterOfKind returns the interpreter of a kind.
func InterpreterOfKind(k InterpreterKind) (Interpreter, bool) {
	for _, in := range Interpreters() {
		if in.Kind == k {
			return in, true
		}
	}
	return Interpreter{}, false
}

// ScriptArg finds the script in an interpreter's arguments (without argv[0]): the value of a script option, or
// the first argument that is not an option or an option's value. It returns "" when the process runs no
// script file (python3 -c, a REPL, a script read from standard input).
func (in Interpreter) ScriptArg(args []string) string {
	has := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) && !in.ScriptOnlyByOpt {
				return args[i+1]
			}
			return ""
		case has(in.ScriptOpt, a):
			if i+1 < len(args) {
				return args[i+1]
			}
			return ""
		case has(in.NoScript, a):
			return ""
		case has(in.WithArg, a):
			i++ // the option's value
		case len(a) > 1 && (a[0] == '-' || (in.Kind == Shell && a[0] == '+')):
			if strings.HasPrefix(a, "--") {
				continue // --opt or --opt=value
			}
			// Clustered short options (-uc, -Bm): a no-script letter among them ends the search, one that
			// takes a value takes the rest of the cluster or the next argument.
			for j := 1; j < len(a); j++ {
				opt := string(a[0]) + string(a[j])
				if has(in.NoScript, opt) {
					return ""
				}
				if has(in.ScriptOpt, opt) {
					if j+1 < len(a) {
						return a[j+1:]
					}
					if i+1 < len(args) {
						return args[i+1]
					}
					return ""
				}
				if has(in.WithArg, opt) {
					if j+1 == len(a) {
						i++
					}
					break
				}
			}
		default:
			if in.ScriptOnlyByOpt {
				return ""
			}
			return a
		}
	}
	return ""
}

// KernelNoScriptOptions are the options the kernel itself recognises as "no script" when they come first, so
// that python3 -c and sh -c are identified at exec time without the helper. At most 11 bytes each.
func (in Interpreter) KernelNoScriptOptions() []string {
	var out []string
	for _, o := range in.NoScript {
		if len(o) <= 11 {
			out = append(out, o)
		}
	}
	return out
}

// Unidentified is the identity the kernel gives an interpreter's process whose script the helper has not
// identified (yet): no rule names it.
var Unidentified = Executable{Dev: 0, Ino: 1}

// IsScript reports whether e is the identity of a script run by an interpreter (see ViaIdentity).
func (e Executable) IsScript() bool { return e.Dev == 0 && e.Ino > 1 }

// IsUnidentified reports whether e is Unidentified.
func (e Executable) IsUnidentified() bool { return e == Unidentified }

// ViaIdentity is the application identity of interpreter running script: device 0, which no file system
// has, and a hash of both identities as the inode, so "python3 via a.py", "python3 via b.py" and "node via
// a.py" are three applications, none of which is python3 itself. The hash is SHA-256: nobody can make a file
// whose identity pairs to another script's.
func ViaIdentity(interpreter, script Executable) Executable {
	var b [32]byte
	binary.LittleEndian.PutUint64(b[0:], interpreter.Dev)
	binary.LittleEndian.PutUint64(b[8:], interpreter.Ino)
	binary.LittleEndian.PutUint64(b[16:], script.Dev)
	binary.LittleEndian.PutUint64(b[24:], script.Ino)
	sum := sha256.Sum256(b[:])
	ino := binary.LittleEndian.Uint64(sum[:8])
	if ino <= 1 {
		ino += 2
	}
	return Executable{Dev: 0, Ino: ino}
}

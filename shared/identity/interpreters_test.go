package identity

import "testing"

func TestScriptArg(t *testing.T) {
	cases := []struct {
		kind InterpreterKind
		args []string
		want string
	}{
		{Python, []string{"tool.py", "-c", "x"}, "tool.py"},
		{Python, []string{"-u", "-W", "ignore", "tool.py"}, "tool.py"},
		{Python, []string{"-Wignore", "tool.py"}, "tool.py"},
		{Python, []string{"-c", "print(1)", "tool.py"}, ""},
		{Python, []string{"-uc", "print(1)"}, ""},
		{Python, []string{"-m", "http.server"}, ""},
		{Python, []string{"-"}, ""},
		{Python, nil, ""},
		{Python, []string{"-X", "dev", "--", "tool.py"}, "tool.py"},
		{Node, []string{"--require", "x", "app.js"}, "app.js"},
		{Node, []string{"-e", "1"}, ""},
		{Node, []string{"--inspect=9229", "app.js"}, "app.js"},
		{Shell, []string{"-e", "-o", "pipefail", "run.sh"}, "run.sh"},
		{Shell, []string{"-c", "echo hi", "run.sh"}, ""},
		{Shell, []string{"-xc", "echo hi"}, ""},
		{Perl, []string{"-I", "lib", "x.pl"}, "x.pl"},
		{Perl, []string{"-Ilib", "-e", "1"}, ""},
		{PHP, []string{"-f", "index.php"}, "index.php"},
		{PHP, []string{"-d", "a=b", "index.php"}, "index.php"},
		{Java, []string{"-jar", "app.jar"}, "app.jar"},
		{Java, []string{"-cp", "x.jar", "Main"}, ""},
		{Java, []string{"-Xmx1g", "-jar", "app.jar"}, "app.jar"},
		{Ruby, []string{"-e", "1"}, ""},
		{Lua, []string{"-l", "socket", "x.lua"}, "x.lua"},
		{R, []string{"--vanilla", "x.R"}, "x.R"},
	}
	for _, c := range cases {
		in, ok := InterpreterOfKind(c.kind)
		if !ok {
			t.Fatalf("no interpreter of kind %d", c.kind)
		}
		if got := in.ScriptArg(c.args); got != c.want {
			t.Errorf("%s %q: script %q, want %q", in.Name, c.args, got, c.want)
		}
	}
}

func TestInterpreterNamed(t *testing.T) {
	for name, want := range map[string]bool{
		"python3": true, "python3.11": true, "python3-config": false, "node": true, "nodejs": true, "perl": true,
		"perl5.36.0": true, "bash": true, "dash": true, "sh": true, "zsh": true, "php8.2": true, "lua5.4": true,
		"Rscript": true, "java": true, "ruby3.1": true, "busybox": false, "curl": false, "pythonista": false,
	} {
		if _, got := InterpreterNamed(name); got != want {
			t.Errorf("%s: interpreter %v, want %v", name, got, want)
		}
	}
}

func TestViaIdentity(t *testing.T) {
	py := Executable{Dev: 2049, Ino: 100}
	node := Executable{Dev: 2049, Ino: 101}
	a := Executable{Dev: 2049, Ino: 500}
	b := Executable{Dev: 2049, Ino: 501}
	ids := map[Executable]string{}
	for name, id := range map[string]Executable{
		"python via a": ViaIdentity(py, a), "python via b": ViaIdentity(py, b), "node via a": ViaIdentity(node, a),
	} {
		if !id.IsScript() || id.IsAny() || id.IsUnidentified() {
			t.Errorf("%s: %v is not a script identity", name, id)
		}
		if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share identity %v", name, other, id)
		}
		ids[id] = name
	}
	if ViaIdentity(py, a) != ViaIdentity(py, a) {
		t.Error("ViaIdentity is not stable")
	}
	if py.IsScript() || Unidentified.IsScript() {
		t.Error("an executable or the unidentified identity counts as a script")
	}
}

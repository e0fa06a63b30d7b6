// Package i18ntest prepares what a test needs to see translated text without touching the system: a
// compiled locale (glibc translates nothing for a locale it cannot load) and compiled catalogs, both in
// the test's temporary directory.
//
// Locales are compiled with localedef from the `locales` package's sources (/usr/share/i18n/locales), which
// tests/install-deps.sh installs; the test points glibc at them with LOCPATH. This works on a clean Debian 12
// without locale-gen or root, and leaves /usr/lib/locale alone.
package i18ntest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Locale compiles the locale name ("de_DE.UTF-8": language_TERRITORY.CHARSET) into a temporary directory and
// returns that directory, to be used as LOCPATH for this process (t.Setenv) or for a child's environment.
func Locale(tb testing.TB, name string) string {
	tb.Helper()
	base, charset, ok := strings.Cut(name, ".")
	if !ok {
		tb.Fatalf("i18ntest: locale %q has no charset (want e.g. de_DE.UTF-8)", name)
	}
	if _, err := exec.LookPath("localedef"); err != nil {
		tb.Fatalf("i18ntest: localedef not found (package libc-bin): %v", err)
	}
	if _, err := os.Stat(filepath.Join("/usr/share/i18n/locales", base)); err != nil {
		tb.Fatalf("i18ntest: no locale source for %s (install the Debian package `locales`, "+
			"tests/install-deps.sh does): %v", base, err)
	}
	dir := tb.TempDir()
	out, err := exec.Command("localedef", "-i", base, "-f", charset, filepath.Join(dir, name)).CombinedOutput()
	if err != nil {
		tb.Fatalf("i18ntest: localedef %s: %v\n%s", name, err, out)
	}
	return dir
}

// Catalog compiles the .po file po with msgfmt --check into localeDir/lang/LC_MESSAGES/domain.mo (the layout
// bindtextdomain expects) and returns localeDir; an empty localeDir means a new temporary directory.
func Catalog(tb testing.TB, localeDir, domain, lang, po string) string {
	tb.Helper()
	if localeDir == "" {
		localeDir = tb.TempDir()
	}
	dir := filepath.Join(localeDir, lang, "LC_MESSAGES")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command("msgfmt", "--check", "-o", filepath.Join(dir, domain+".mo"), po).CombinedOutput()
	if err != nil {
		tb.Fatalf("i18ntest: msgfmt %s (package gettext): %v\n%s", po, err, out)
	}
	return localeDir
}

package i18n_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tattlefw/tattle/app/i18n"
	"github.com/tattlefw/tattle/app/i18n/i18ntest"
)

// A catalog with a plain string, a plural with German's two forms, and a string left untranslated.
const dePO = `msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"
"Language: de\n"

msgid "Allow"
msgstr "Erlauben"

msgid "Don't ask again for “%s”"
msgstr "Für „%s“ nicht mehr fragen"

msgid "%d more waiting"
msgid_plural "%d more waiting"
msgstr[0] "%d weitere wartet"
msgstr[1] "%d weitere warten"
`

// setup compiles the German locale and catalog and sets a German environment for this test.
func setup(t *testing.T, lang string) string {
	t.Helper()
	po := filepath.Join(t.TempDir(), "de.po")
	if err := os.WriteFile(po, []byte(dePO), 0o644); err != nil {
		t.Fatal(err)
	}
	localeDir := i18ntest.Catalog(t, "", "tattle-test", "de", po)
	t.Setenv("LOCPATH", i18ntest.Locale(t, "de_DE.UTF-8"))
	t.Setenv("LANG", lang)
	t.Setenv("LC_ALL", "")
	t.Setenv("LC_MESSAGES", "")
	t.Setenv("LANGUAGE", "")
	return localeDir
}

func TestGermanFollowsLANG(t *testing.T) {
	localeDir := setup(t, "de_DE.UTF-8")
	if err := i18n.Init("tattle-test", localeDir); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if got := i18n.T("Allow"); got != "Erlauben" {
		t.Errorf(`T("Allow") = %q, want "Erlauben"`, got)
	}
	// Non-ASCII on both sides survives the trip through C in UTF-8.
	if got := fmt.Sprintf(i18n.T("Don't ask again for “%s”"), "curl"); got != "Für „curl“ nicht mehr fragen" {
		t.Errorf("quoted string = %q", got)
	}
	if got := i18n.T("Deny"); got != "Deny" {
		t.Errorf(`untranslated T("Deny") = %q, want the msgid back`, got)
	}
	for n, want := range map[int]string{1: "1 weitere wartet", 2: "2 weitere warten", 0: "0 weitere warten"} {
		if got := fmt.Sprintf(i18n.N("%d more waiting", "%d more waiting", n), n); got != want {
			t.Errorf("N(..., %d) = %q, want %q", n, got, want)
		}
	}
	if got := i18n.T(""); got != "" {
		t.Errorf(`T("") = %q, want "" (not the catalog header)`, got)
	}
}

func TestEnglishWhenLANGIsC(t *testing.T) {
	localeDir := setup(t, "C.UTF-8")
	if err := i18n.Init("tattle-test", localeDir); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if got := i18n.T("Allow"); got != "Allow" {
		t.Errorf(`T("Allow") under C.UTF-8 = %q, want "Allow"`, got)
	}
	if got := i18n.N("%d more waiting", "%d more waitings", 1); got != "%d more waiting" {
		t.Errorf("N singular = %q", got)
	}
	if got := i18n.N("%d more waiting", "%d more waitings", 3); got != "%d more waitings" {
		t.Errorf("N plural = %q", got)
	}
}

// A locale that is not installed is reported (so the app can log it) and text stays readable in English.
func TestMissingLocaleIsReported(t *testing.T) {
	localeDir := setup(t, "xx_XX.UTF-8")
	err := i18n.Init("tattle-test", localeDir)
	if !errors.Is(err, i18n.ErrLocale) {
		t.Fatalf("Init with a missing locale: err = %v, want ErrLocale", err)
	}
	if got := i18n.T("Allow"); got != "Allow" {
		t.Errorf(`T("Allow") = %q, want "Allow"`, got)
	}
}

func TestEmptyDomainRefused(t *testing.T) {
	if err := i18n.Init("", t.TempDir()); err == nil {
		t.Fatal("Init with an empty domain succeeded")
	}
}

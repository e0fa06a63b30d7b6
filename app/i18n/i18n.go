// Package i18n translates Tattle's user-facing strings with gettext, through the C library's own libintl
// (glibc carries it), so the app follows LANG/LC_ALL/LANGUAGE exactly like every other GNOME program and
// shares its catalogs (.mo files built by meson's i18n module from po/).
//
// Call Init once at start, before the first T or N and before any goroutine translates. All state lives in
// libintl itself (the bound domain and directory, the loaded catalogs); this package keeps none.
//
// Strings are marked by calling T or N with literal arguments: the extractor in app/i18n/extract finds those
// calls to write po/tattle.pot, so a computed msgid would never be translated.
package i18n

/*
#include <libintl.h>
#include <locale.h>
#include <stdlib.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"strconv"
	"unsafe"
)

// Domain is Tattle's gettext domain (DESIGN.md): the name of its .mo files.
const Domain = "tattle"

// ErrLocale is returned (wrapped) by Init when the C library cannot load the locale that the environment
// asks for (it is not generated on this system). The domain is bound anyway and strings stay untranslated;
// the caller should log the error and go on.
var ErrLocale = errors.New("the locale set in the environment is not available")

// Init sets the program's locale from the environment (setlocale(LC_ALL, "")), so that LANG, LC_ALL,
// LC_MESSAGES and LANGUAGE are followed, binds domain to the catalogs under localeDir
// (localeDir/LL/LC_MESSAGES/domain.mo), asks for UTF-8 output (what GTK expects) and makes domain the
// default for T and N.
func Init(domain, localeDir string) error {
	if domain == "" {
		return errors.New("i18n: empty gettext domain")
	}
	var localeErr error
	empty := C.CString("")
	if C.setlocale(C.LC_ALL, empty) == nil {
		localeErr = fmt.Errorf("i18n: %w (generate it with locale-gen, or set LANG to one `locale -a` lists); "+
			"showing untranslated text", ErrLocale)
	}
	C.free(unsafe.Pointer(empty))

	cDomain := C.CString(domain)
	defer C.free(unsafe.Pointer(cDomain))
	cDir := C.CString(localeDir)
	defer C.free(unsafe.Pointer(cDir))
	cCodeset := C.CString("UTF-8")
	defer C.free(unsafe.Pointer(cCodeset))

	if r, err := C.bindtextdomain(cDomain, cDir); r == nil {
		return fmt.Errorf("i18n: binding domain %q to %s: %v", domain, localeDir, err)
	}
	if r, err := C.bind_textdomain_codeset(cDomain, cCodeset); r == nil {
		return fmt.Errorf("i18n: asking for UTF-8 translations of %q: %v", domain, err)
	}
	if r, err := C.textdomain(cDomain); r == nil {
		return fmt.Errorf("i18n: selecting domain %q: %v", domain, err)
	}
	return localeErr
}

// T returns the translation of msgid in the current locale, or msgid itself when there is none.
// Call it with a string literal so that the extractor sees it.
func T(msgid string) string {
	if msgid == "" {
		// gettext("") returns the catalog's header, never what a caller means.
		return ""
	}
	c := C.CString(msgid)
	defer C.free(unsafe.Pointer(c))
	return C.GoString(C.gettext(c))
}

// N returns the singular or plural translation for count n (by the target language's plural rules, which
// may have more than two forms). Without a translation it returns singular for n == 1, else plural.
// Call it with string literals so that the extractor sees them; n is usually formatted in with fmt.Sprintf.
func N(singular, plural string, n int) string {
	cs := C.CString(singular)
	defer C.free(unsafe.Pointer(cs))
	cp := C.CString(plural)
	defer C.free(unsafe.Pointer(cp))
	// ngettext takes an unsigned long; plural rules only care about magnitude.
	if n < 0 {
		n = -n
	}
	return C.GoString(C.ngettext(cs, cp, C.ulong(n)))
}

// Thousands writes n with the locale's digit group separator (LC_NUMERIC: "3,000" in English, "3.000" in
// German); "," where the locale has none (C).
func Thousands(n uint64) string {
	sep := ","
	if lc := C.localeconv(); lc != nil && lc.thousands_sep != nil {
		if s := C.GoString(lc.thousands_sep); s != "" {
			sep = s
		}
	}
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + sep + s[i:]
	}
	return s
}

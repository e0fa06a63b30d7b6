package api

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tattlefw/tattle/shared/rules"
)

// The enumerated values of the contract, each listed once here; the helper's checks, the store and the
// clients' usage texts all use these lists and validators.

// Modes are the values of Settings.Mode and SetMode.
func Modes() []string { return []string{ModeAlert, ModeSilentAllow, ModeSilentDeny} }

// Formats are the import and export formats of Rules.Import and Rules.Export.
func Formats() []string { return []string{FormatTattle, FormatLittleSnitch, FormatOpenSnitch} }

// ExportFormats are the formats Rules.Export writes.
func ExportFormats() []string { return []string{FormatTattle, FormatLittleSnitch} }

// Scopes are the values of Answer.Scope.
func Scopes() []string { return []string{ScopeHost, ScopeDomain, ScopePort, ScopeAny} }

// DefaultActions are the values of Settings.DefaultAction.
func DefaultActions() []string { return []string{DefaultAllow, DefaultDeny} }

// FailPolicies are the values of Settings.FailPolicy.
func FailPolicies() []string { return []string{FailPass, FailDrop} }

// AnswerDurations are the values of Answer.Duration (rules.Duration*).
func AnswerDurations() []string {
	return []string{rules.DurationOnce, rules.DurationUntilQuit, rules.DurationUntilRestart, rules.DurationUntilTime,
		rules.DurationForever}
}

// ErrInvalidValue is wrapped by every error of this file's validators (errors.Is).
var ErrInvalidValue = errors.New("invalid value")

// oneOf checks v against the allowed values; the error names what and lists the values.
func oneOf(what, v string, allowed []string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("%w: %s %q: use %s", ErrInvalidValue, what, v, list(allowed))
}

// list writes values as "a, b or c".
func list(vs []string) string {
	if len(vs) < 2 {
		return strings.Join(vs, "")
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " or " + vs[len(vs)-1]
}

// ValidateMode checks a mode for SetMode. Learning mode is started with Learn, for a time.
func ValidateMode(m string) error {
	if m == ModeLearn {
		return fmt.Errorf("%w: mode %q is started for a time (Learn, tattlectl learn DURATION)", ErrInvalidValue, m)
	}
	return oneOf("mode", m, Modes())
}

// ValidateLearnSeconds checks the length of a learning period.
func ValidateLearnSeconds(s uint32) error {
	if s < 1 || s > MaxLearnSeconds {
		return fmt.Errorf("%w: learning for %d s: use 1 to %d seconds", ErrInvalidValue, s, MaxLearnSeconds)
	}
	return nil
}

// ValidateFormat checks an import format.
func ValidateFormat(f string) error { return oneOf("format", f, Formats()) }

// ValidateExportFormat checks an export format.
func ValidateExportFormat(f string) error { return oneOf("export format", f, ExportFormats()) }

// ValidateSettings checks every field; its error names the field and the values it may take. An invalid
// value changes nothing (SetSettings applies them whole).
func ValidateSettings(st Settings) error {
	if st.Mode != ModeLearn { // settings read while learning come back with it; the store keeps its end
		if err := ValidateMode(st.Mode); err != nil {
			return err
		}
	}
	if err := oneOf("default action", st.DefaultAction, DefaultActions()); err != nil {
		return err
	}
	if st.QuestionTimeout < MinQuestionTimeout || st.QuestionTimeout > MaxQuestionTimeout {
		return fmt.Errorf("%w: question timeout %d s: use %d to %d seconds", ErrInvalidValue, st.QuestionTimeout,
			MinQuestionTimeout, MaxQuestionTimeout)
	}
	if err := oneOf("fail policy", st.FailPolicy, FailPolicies()); err != nil {
		return err
	}
	if st.SystemDefault != "" { // "": a client older than the setting (allow)
		if err := oneOf("system default", st.SystemDefault, DefaultActions()); err != nil {
			return err
		}
	}
	if st.HistoryDays < 1 || st.HistoryDays > MaxHistoryDays {
		return fmt.Errorf("%w: history retention %d days: use 1 to %d", ErrInvalidValue, st.HistoryDays, MaxHistoryDays)
	}
	return nil
}

// ValidateAnswer checks an agent's answer before anything is done with it; now bounds Until (in the future,
// within ten years).
func ValidateAnswer(a Answer, now time.Time) error {
	if err := oneOf("action", a.Action, []string{rules.ActionAllow, rules.ActionDeny}); err != nil {
		return err
	}
	if err := oneOf("scope", a.Scope, Scopes()); err != nil {
		return err
	}
	if err := oneOf("duration", a.Duration, AnswerDurations()); err != nil {
		return err
	}
	if a.Duration != rules.DurationUntilTime {
		if a.Until != 0 {
			return fmt.Errorf("%w: until is only for duration %s", ErrInvalidValue, rules.DurationUntilTime)
		}
		return nil
	}
	if u := time.Unix(a.Until, 0); !u.After(now) || u.After(now.AddDate(10, 0, 0)) {
		return fmt.Errorf("%w: until %d: must be in the future, within ten years", ErrInvalidValue, a.Until)
	}
	return nil
}

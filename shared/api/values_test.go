package api

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/rules"
)

func goodSettings() Settings {
	return Settings{Mode: ModeAlert, DefaultAction: DefaultDeny, QuestionTimeout: 30, FailPolicy: FailPass, HistoryDays: 30}
}

// TestValidateSettings: every field's bounds, each refusal naming the field and what it may be.
func TestValidateSettings(t *testing.T) {
	if err := ValidateSettings(goodSettings()); err != nil {
		t.Fatalf("good settings refused: %v", err)
	}
	for _, m := range Modes() {
		st := goodSettings()
		st.Mode = m
		if err := ValidateSettings(st); err != nil {
			t.Errorf("mode %s refused: %v", m, err)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*Settings)
		says   string
	}{
		{"empty mode", func(s *Settings) { s.Mode = "" }, "alert, silent-allow or silent-deny"},
		{"unknown mode", func(s *Settings) { s.Mode = "learning-typo" }, "mode"},
		{"default action", func(s *Settings) { s.DefaultAction = "maybe" }, "allow or deny"},
		{"timeout 0", func(s *Settings) { s.QuestionTimeout = 0 }, "1 to 3600"},
		{"timeout too long", func(s *Settings) { s.QuestionTimeout = MaxQuestionTimeout + 1 }, "question timeout"},
		{"fail policy", func(s *Settings) { s.FailPolicy = "open" }, "pass or drop"},
		{"history 0", func(s *Settings) { s.HistoryDays = 0 }, "history"},
		{"history too long", func(s *Settings) { s.HistoryDays = MaxHistoryDays + 1 }, "history"},
	} {
		st := goodSettings()
		tc.change(&st)
		err := ValidateSettings(st)
		if err == nil {
			t.Errorf("%s: accepted %+v", tc.name, st)
			continue
		}
		if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: error %q does not wrap ErrInvalidValue or lacks %q", tc.name, err, tc.says)
		}
	}
}

// TestValidateAnswer: the actions, scopes and durations of the contract, and Until only for until-time,
// in the future and within ten years.
func TestValidateAnswer(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, scope := range Scopes() {
		for _, d := range AnswerDurations() {
			a := Answer{Action: rules.ActionAllow, Scope: scope, Duration: d}
			if d == rules.DurationUntilTime {
				a.Until = now.Add(time.Hour).Unix()
			}
			if err := ValidateAnswer(a, now); err != nil {
				t.Errorf("%+v refused: %v", a, err)
			}
		}
	}
	for _, tc := range []struct {
		a    Answer
		says string
	}{
		{Answer{Action: "permit", Scope: ScopeHost, Duration: rules.DurationOnce}, "action"},
		{Answer{Action: rules.ActionDeny, Scope: "everything", Duration: rules.DurationOnce}, "host, domain, port or any"},
		{Answer{Action: rules.ActionDeny, Scope: ScopeAny, Duration: "a while"}, "duration"},
		{Answer{Action: rules.ActionDeny, Scope: ScopeAny, Duration: rules.DurationForever, Until: now.Unix() + 60}, "only for duration until-time"},
		{Answer{Action: rules.ActionDeny, Scope: ScopeAny, Duration: rules.DurationUntilTime, Until: now.Unix()}, "future"},
		{Answer{Action: rules.ActionDeny, Scope: ScopeAny, Duration: rules.DurationUntilTime, Until: now.AddDate(11, 0, 0).Unix()}, "ten years"},
	} {
		err := ValidateAnswer(tc.a, now)
		if err == nil || !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v: error %v, want one wrapping ErrInvalidValue saying %q", tc.a, err, tc.says)
		}
	}
}

// TestValidateFormatsAndModes: the lists the clients show are exactly what the validators accept.
func TestValidateFormatsAndModes(t *testing.T) {
	for _, f := range Formats() {
		if err := ValidateFormat(f); err != nil {
			t.Errorf("format %s refused: %v", f, err)
		}
	}
	for _, f := range ExportFormats() {
		if err := ValidateExportFormat(f); err != nil {
			t.Errorf("export format %s refused: %v", f, err)
		}
	}
	if err := ValidateExportFormat(FormatOpenSnitch); err == nil {
		t.Error("opensnitch accepted as an export format")
	}
	for _, bad := range []string{"", "json", "ALERT"} {
		if ValidateFormat(bad) == nil || ValidateMode(bad) == nil {
			t.Errorf("%q accepted as a format or mode", bad)
		}
	}
	if err := ValidateMode("x"); !strings.Contains(err.Error(), "use alert, silent-allow or silent-deny") {
		t.Errorf("mode error %q does not list the modes", err)
	}
}

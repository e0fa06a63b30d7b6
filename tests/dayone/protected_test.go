package dayone

import (
	"strings"
	"testing"
	"time"

	"github.com/tattlefw/tattle/shared/api"
	"github.com/tattlefw/tattle/tests/internal/holdrig"
)

// TestProtectedAnswersNeedThePassword (issue 11): with the Protected setting on, an answer counts only once
// its user authenticated (manage-own-rules, the user's own password through the agent's pkttyagent). A wrong
// password (a program of the user answering, someone at the unlocked desk) makes no rule and lets nothing
// through; the user's own password does both.
func TestProtectedAnswersNeedThePassword(t *testing.T) {
	st := apiSettings(20)
	st.Protected = true
	r := ring.NewRig(t, "dayone-protected", st)
	const name, password = "tattle-d1-prot", "protected-Pw-2"
	uid := testUser(t, name, password)
	tty := newPTY(t, uid)
	ag := startTTYAgent(t, r, uid, tty)

	try := func(typed string) (q api.Question, out string, rule *api.Rule) {
		t.Helper()
		srv := r.NS.TCPServer(t)
		c := holdrig.Start(t, "runuser", "-u", name, "--", "curl", "-sS", "-m", "30", "http://"+srv+"/")
		q = ag.Next(t, "question", 10*time.Second).Question
		ag.Answer(t, "a")
		tty.authenticate(t, name, typed)
		out = strings.TrimSpace(c.Wait(t, 30*time.Second))
		port := srv[strings.LastIndexByte(srv, ':')+1:]
		for _, ru := range r.Rules(t) {
			if strings.HasSuffix(ru.Application, "curl") && ru.Port == port {
				ru := ru
				rule = &ru
			}
		}
		return q, out, rule
	}

	q, out, rule := try("not-" + password)
	report.Add(t, "protected: the user's answer with a wrong password (question about uid %d, System=%v): curl %q, rule made: %v", q.UID, q.System, out, rule != nil)
	if out == "ok" || rule != nil {
		t.Errorf("an answer without the user's password counted: curl %q, rule %+v\npty: %s", out, rule, tty.text())
	}
	if !strings.Contains(tty.text(), "AUTHENTICATION FAILED") {
		t.Errorf("pkttyagent did not report the failed authentication:\n%s", tty.text())
	}
	q, out, rule = try(password)
	report.Add(t, "protected: the same user's answer with their password: curl %q, rule made for uid %d: %v", out, q.UID, rule != nil && rule.Owner == int64(uid))
	if out != "ok" || rule == nil || rule.Owner != int64(uid) {
		t.Errorf("an authenticated answer: curl %q, rule %+v\npty: %s", out, rule, tty.text())
	}
}

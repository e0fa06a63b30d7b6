package service

import (
	"testing"

	"github.com/tattlefw/tattle/shared/api"
)

// TestSystemQuestionsGoToAnAdministrator: a system process's question goes to the newest administrator's agent,
// never to an ordinary user's (even the newest), and to nobody when no administrator registered; other
// questions still go to their user's agent, else root's.
func TestSystemQuestionsGoToAnAdministrator(t *testing.T) {
	var a agents
	a.add(agent{sender: ":1.1", uid: 1000})
	if _, ok := a.forQuestion(api.Question{UID: 42, System: true}); ok {
		t.Fatal("a system question went to an ordinary user's agent")
	}
	if got, ok := a.forQuestion(api.Question{UID: 1000}); !ok || got.sender != ":1.1" {
		t.Fatalf("own question: %+v %v", got, ok)
	}
	a.add(agent{sender: ":1.2", uid: 1001, admin: true})
	a.add(agent{sender: ":1.3", uid: 1002})
	if got, ok := a.forQuestion(api.Question{UID: 0, System: true}); !ok || got.sender != ":1.2" {
		t.Fatalf("system question went to %+v (%v), want the administrator :1.2", got, ok)
	}
	if _, ok := a.forQuestion(api.Question{UID: 1005}); ok {
		t.Fatal("a user without an agent was asked through someone else's (no root agent registered)")
	}
	a.add(agent{sender: ":1.4", uid: 0, admin: true})
	if got, _ := a.forQuestion(api.Question{UID: 65534, System: true}); got.sender != ":1.4" {
		t.Fatalf("newest administrator is root's :1.4, got %+v", got)
	}
	a.remove(":1.4", "")
	if got, _ := a.forQuestion(api.Question{UID: 65534, System: true}); got.sender != ":1.2" {
		t.Fatalf("after root's agent left: %+v", got)
	}
}

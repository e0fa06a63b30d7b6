package service

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"time"

	"github.com/tattlefw/tattle/helper/hold"
	"github.com/tattlefw/tattle/shared/api"
)

// adminGroups are the groups whose members polkit's default rules accept as administrators (Debian: sudo;
// Fedora, Arch: wheel).
var adminGroups = []string{"sudo", "wheel", "admin"}

// ErrNotAuthenticated is returned by Ask when an administrator answered a system process's question but did
// not pass polkit's authentication for manage-rules.
var ErrNotAuthenticated = errors.New("the administrator's answer was not authenticated")

// challenger is an Authorizer that also tells a challenge (polkit would ask for a password) from a refusal.
type challenger interface {
	Check(ctx context.Context, sender, action string) (authorized, challenge bool, err error)
}

// Check implements challenger: CheckAuthorization without interaction.
func (p Polkit) Check(ctx context.Context, sender, action string) (bool, bool, error) {
	return p.check(ctx, sender, action, false)
}

// isAdministrator says whether the agent that c registered belongs to someone who could obtain manage-rules:
// root; or polkit says yes (a local rule grants it) or would ask for authentication (auth_admin*) and the
// user is a member of an administrators' group, so the password asked would be their own.
func (s *Service) isAdministrator(c caller) bool {
	if c.uid == 0 {
		return true
	}
	ch, ok := s.auth.(challenger)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	authorized, challenge, err := ch.Check(ctx, c.sender, api.ActionManageRules)
	if err != nil {
		s.log.Warn("could not ask polkit whether an agent is an administrator's", "uid", c.uid, "error", err)
		return false
	}
	return authorized || (challenge && inAdminGroup(c.uid))
}

func inAdminGroup(uid uint32) bool {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return false
	}
	gids, err := u.GroupIds()
	if err != nil {
		return false
	}
	for _, name := range adminGroups {
		g, err := user.LookupGroup(name)
		if err != nil {
			continue
		}
		for _, gid := range gids {
			if gid == g.Gid {
				return true
			}
		}
	}
	return false
}

// authenticateSystemAnswer makes an administrator (not root) authenticate through polkit before their answer
// about a system process counts: it asks with interaction, so the agent's session (its desktop dialog, or the
// pkttyagent that `tattlectl agent` runs) asks for the password.
func (s *Service) authenticateSystemAnswer(ctx context.Context, ag agent, q api.Question) error {
	ok, err := s.answerAuthorized(ctx, ag, q, api.ActionManageRules)
	if err != nil || ok {
		return err
	}
	return fmt.Errorf("question %d (uid %d): %w", q.ID, ag.uid, ErrNotAuthenticated)
}

// answerAuthorized asks polkit, with interaction, whether the agent's user may answer q under action: the one
// check behind both answers that need a password (a system process's, and any in protected mode). Root's
// answers need nothing.
func (s *Service) answerAuthorized(ctx context.Context, ag agent, q api.Question, action string) (bool, error) {
	if ag.uid == 0 {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	ok, err := s.auth.Authorized(ctx, ag.sender, action, true)
	if err != nil {
		return false, fmt.Errorf("authenticate the answer to question %d: %w", q.ID, err)
	}
	return ok, nil
}

// noAgentError is the error of Ask when nobody can be asked; it matches hold.ErrNobodyToAsk.
func noAgentError(q api.Question) error {
	if q.System {
		return fmt.Errorf("no administrator's agent is registered: %w", hold.ErrNobodyToAsk)
	}
	return fmt.Errorf("%w: %w", ErrNoAgent, hold.ErrNobodyToAsk)
}

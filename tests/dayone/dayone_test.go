package dayone

import (
	"fmt"
	"strconv"

	"github.com/tattlefw/tattle/shared/api"
)

// apiSettings are alert-mode settings with a question timeout (seconds); the rest take the rig's values.
func apiSettings(timeout uint32) api.Settings {
	return api.Settings{Mode: api.ModeAlert, QuestionTimeout: timeout}
}

// portsLabelOf is how tattlectl's agent names a question's ports ("3,000 ports").
func portsLabelOf(n uint32) string {
	s := strconv.FormatUint(uint64(n), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return fmt.Sprintf("%s ports", s)
}

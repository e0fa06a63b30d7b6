package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/tattlefw/tattle/shared/api"
)

// guessFormat recognises an import file when --format is not given. All three formats are JSON objects:
//
//	Tattle:       {"version": 1, "rules": [{"application": ..., ...}]}
//	Little Snitch {"name": ..., "rules": [{"process": ..., ...}], "denied-remote-hosts": [...]}, usually *.lsrules
//	OpenSnitch:   {"name": ..., "action": ..., "duration": ..., "operator": {...}}, one rule per file
func guessFormat(file string, data []byte) (string, error) {
	if strings.EqualFold(filepath.Ext(file), ".lsrules") {
		return api.FormatLittleSnitch, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), &top); err != nil || top == nil {
		why := "it is not a JSON object"
		if err != nil {
			why = fmt.Sprintf("it is not JSON (%v)", err)
		}
		return "", fmt.Errorf("cannot import %s: %s; Tattle, Little Snitch and OpenSnitch rule files are JSON objects", displayName(file), why)
	}
	if _, ok := top["operator"]; ok {
		return api.FormatOpenSnitch, nil
	}
	if _, ok := top["version"]; ok {
		return api.FormatTattle, nil
	}
	for k := range top {
		if strings.HasPrefix(k, "denied-remote-") {
			return api.FormatLittleSnitch, nil
		}
	}
	if raw, ok := top["rules"]; ok {
		var rs []map[string]json.RawMessage
		if json.Unmarshal(raw, &rs) == nil && len(rs) > 0 {
			if _, ok := rs[0]["application"]; ok {
				return api.FormatTattle, nil // without its version; the helper will say so
			}
		}
		return api.FormatLittleSnitch, nil
	}
	return "", usagef("cannot tell what format %s is in; give --format tattle, lsrules or opensnitch", displayName(file))
}

package client

import (
	"context"

	"github.com/godbus/dbus/v5"

	"github.com/tattlefw/tattle/shared/api"
)

// Settings returns the helper's settings. Anyone may call it.
func (c *Client) Settings(ctx context.Context) (api.Settings, error) {
	var s api.Settings
	err := c.call(ctx, api.DaemonInterface+".Settings", false, []any{&s})
	return s, err
}

// SetSettings replaces the helper's settings as a whole (manage-rules); an invalid value changes nothing.
func (c *Client) SetSettings(ctx context.Context, s api.Settings) error {
	return c.call(ctx, api.DaemonInterface+".SetSettings", true, nil, s)
}

// Pending lists the open questions about the caller's processes (everyone's with manage-rules).
func (c *Client) Pending(ctx context.Context) ([]api.Question, error) {
	var qs []api.Question
	err := c.call(ctx, api.PromptsInterface+".Pending", false, []any{&qs})
	return qs, err
}

// RegisterAgent makes the object at path, exported on this client's connection with api.AgentInterface,
// the agent that answers questions about the caller's processes (answer-prompts).
func (c *Client) RegisterAgent(ctx context.Context, path dbus.ObjectPath) error {
	return c.call(ctx, api.PromptsInterface+".RegisterAgent", true, nil, path)
}

// RegisterAgentReplacing registers like RegisterAgent, and makes this agent the one asked ahead of the
// user's others (tattlectl agent --replace). It needs the user's own authentication (manage-own-rules); the
// agents it displaces are told (AskedChanged).
func (c *Client) RegisterAgentReplacing(ctx context.Context, path dbus.ObjectPath) error {
	return c.call(ctx, api.PromptsInterface+".RegisterAgentWithOptions", true, nil, path,
		map[string]dbus.Variant{api.AgentOptionReplace: dbus.MakeVariant(true)})
}

// UnregisterAgent withdraws an agent registered on this connection.
func (c *Client) UnregisterAgent(ctx context.Context, path dbus.ObjectPath) error {
	return c.call(ctx, api.PromptsInterface+".UnregisterAgent", false, nil, path)
}

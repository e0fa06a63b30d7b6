// Package rules is Tattle's rule model, shared by the root helper and the clients: the on-disk and on-the-wire
// rule format (Parse, Marshal, Validate), the compiled form the helper evaluates (Compile, Matches), the order
// in which rules win over each other (Compare, Decide; see PRECEDENCE.md), and importers from Little Snitch
// and OpenSnitch.
//
// Rule files are written by people (admins drop them into /etc/tattle/rules.d) and by programs (the helper
// keeps the rules users make under /var/lib/tattle). Both kinds are read with the same strict parser: a rule
// file that is only half understood would enforce something other than what its author meant, so anything
// unexpected is an error that names the file, the rule and the field at fault.
//
// The package has no global mutable state and needs no privileges.
package rules

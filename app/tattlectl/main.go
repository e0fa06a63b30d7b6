// Command tattlectl is Tattle's terminal client: it shows and changes what tattled, the root helper, enforces,
// by calling it over the system bus. Run `tattlectl --help` for the commands.
//
// Exit status: 0 success, 1 the operation failed, 2 usage error, 3 tattled is not reachable, 4 access denied.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], systemEnv())
	stop()
	os.Exit(code)
}

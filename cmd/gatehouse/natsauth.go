package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
)

// Broker credentials: every connection to NATS authenticates with an nkey
// seed, and an embedded server admits only the users of a users file,
// each with the permissions of its roles.

// natsClientFlags are how a process authenticates to a broker.
type natsClientFlags struct {
	nkey, ca *string
}

func addNATSClientFlags(fs *flag.FlagSet) natsClientFlags {
	return natsClientFlags{
		nkey: fs.String("nats-nkey", os.Getenv("GATEHOUSE_NATS_NKEY"), "nkey seed `file` to authenticate to NATS with (default $GATEHOUSE_NATS_NKEY; gatehouse credentials makes them, an embedded server's are in DATA-DIR/credentials)"),
		ca:   fs.String("nats-ca", "", "certificate authority `file` to trust for a NATS server that speaks TLS (tls:// URLs)"),
	}
}

func (f natsClientFlags) apply(c *natsbroker.Config) { c.NKeyFile, c.TLSCA = *f.nkey, *f.ca }

// natsServerFlags are how an embedded server admits clients.
type natsServerFlags struct {
	users, cert, key *string
}

func addNATSServerFlags(fs *flag.FlagSet) natsServerFlags {
	return natsServerFlags{
		users: fs.String("nats-users", "", "embedded NATS: the users `file` to admit (gatehouse credentials); default: DATA-DIR/credentials, made on the first start"),
		cert:  fs.String("nats-tls-cert", "", "embedded NATS: certificate `file`; with -nats-tls-key every client over the network must use TLS"),
		key:   fs.String("nats-tls-key", "", "embedded NATS: the certificate's key `file`"),
	}
}

// embedded sets up an embedded server's access: the users it admits and
// the seed this process connects with (own: a name of the default
// identities). Without -nats-users it makes the credentials in
// DATA-DIR/credentials, keeping those already there.
func (f natsServerFlags) embedded(c *natsbroker.Config, dataDir, own string) (natsbroker.Credentials, error) {
	return embeddedAuth(c, dataDir, own, *f.users, *f.cert, *f.key)
}

// embeddedAuth is natsServerFlags.embedded with the flags' values.
func embeddedAuth(c *natsbroker.Config, dataDir, own, usersFile, cert, key string) (natsbroker.Credentials, error) {
	c.TLSCert, c.TLSKey = cert, key
	creds := natsbroker.Credentials{Dir: filepath.Join(dataDir, "credentials")}
	if usersFile != "" {
		users, err := natsbroker.LoadUsers(usersFile)
		if err != nil {
			return creds, err
		}
		creds.Dir = filepath.Dir(usersFile)
		c.Users = users
	} else {
		users, err := natsbroker.MakeCredentials(creds.Dir, natsbroker.DefaultIDs())
		if err != nil {
			return creds, err
		}
		c.Users = users
	}
	if c.NKeyFile == "" {
		c.NKeyFile = creds.Seed(own)
	}
	return creds, nil
}

// printCredentials tells how workers and tools connect to an embedded
// server.
func printCredentials(w io.Writer, who string, creds natsbroker.Credentials, url string) {
	fmt.Fprintf(w, "gatehouse %s: NATS credentials in %s (node.nk for gateway nodes, coordinator.nk, worker.nk for bot workers, tail.nk for read-only tools); a worker connects with client.Config{URL: %q, NKeyFile: %q}; try: gatehouse tail -nats %s -nats-nkey %s -count\n",
		who, creds.Dir, url, creds.Seed("worker"), url, creds.Seed("tail"))
}

const credentialsSummary = `Make NATS credentials for a deployment: an nkey seed per identity (NAME.nk, readable by
its owner only) and users.json, the public keys with their roles, which gatehouse broker
(-nats-users) or any embedded server admits. Seeds that exist are kept. Give each process
the seed of its role with -nats-nkey: node (gateway nodes), coordinator, worker (bot
workers: consume events, send commands), tail (read-only tools). For an external NATS
server or cluster, -nats-config prints the authorization block to put in its
configuration.`

func runCredentials(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("credentials", credentialsSummary, stderr)
	var (
		dir    = fs.String("dir", "gatehouse-credentials", "the credentials `directory`")
		add    = fs.String("add", "", "add one identity `NAME` (another key for a role, to rotate or to tell machines apart) instead of the default ones")
		roles  = fs.String("roles", "", "with -add: its roles, comma-separated: node, coordinator, worker, tail")
		config = fs.Bool("nats-config", false, "print the nats-server authorization block for the users")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ids := natsbroker.DefaultIDs()
	if *add != "" {
		var rs []natsbroker.Role
		for r := range strings.SplitSeq(*roles, ",") {
			r = strings.TrimSpace(r)
			if !slices.Contains(natsbroker.Roles, natsbroker.Role(r)) {
				return usageError{fmt.Sprintf("credentials: -roles: %q is not node, coordinator, worker or tail", r)}
			}
			rs = append(rs, natsbroker.Role(r))
		}
		ids = map[string][]natsbroker.Role{*add: rs}
	} else if *roles != "" {
		return usageError{"credentials: -roles goes with -add"}
	}
	users, err := natsbroker.MakeCredentials(*dir, ids)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if *config {
		block, err := natsbroker.ServerAuthorization(natsbroker.Config{}, users)
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, block)
		return nil
	}
	creds := natsbroker.Credentials{Dir: *dir}
	for _, u := range users {
		fmt.Fprintf(stdout, "%-12s %s  %s\n", u.Name, u.NKey, creds.Seed(u.Name))
	}
	fmt.Fprintf(stdout, "users file: %s (gatehouse broker -nats-users %s)\n", creds.UsersFile(), creds.UsersFile())
	return nil
}

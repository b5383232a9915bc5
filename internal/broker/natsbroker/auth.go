package natsbroker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Access to the broker: every identity is an NATS nkey, with the
// permissions of its roles and nothing more.
//
// NKeys rather than user names and passwords: the server keeps only
// public keys (its configuration and data directory hold no secret),
// nothing secret crosses the wire (the client signs the server's
// challenge with its seed), and every NATS client library and the nats
// tool take a seed file (--nkey).

// Role is what an identity does in a deployment.
type Role string

// Roles.
const (
	// RoleNode: gateway nodes. They publish events, answer gateway
	// commands, keep their sessions and their liveness record, and read
	// the control buckets.
	RoleNode Role = "node"
	// RoleCoordinator: coordinator replicas. They own the streams and
	// buckets and write the control plane's state, the leadership and the
	// view; they publish no event and send no command.
	RoleCoordinator Role = "coordinator"
	// RoleWorker: bot workers. They consume events with acks and send
	// gateway commands; they publish no event and write no bucket.
	RoleWorker Role = "worker"
	// RoleTail: read-only tools (gatehouse tail): they consume events and
	// nothing else.
	RoleTail Role = "tail"
)

// Roles lists every role, in the order credentials are made.
var Roles = []Role{RoleNode, RoleCoordinator, RoleWorker, RoleTail}

// ErrAuth means the broker refused this process's credentials, or the
// credentials cannot be read.
var ErrAuth = errors.New("natsbroker: authentication")

// User is one identity the broker admits.
type User struct {
	// Name is for people: "node", "worker-eu", …
	Name string `json:"name"`
	// NKey is the identity's public user key (it starts with U).
	NKey string `json:"nkey"`
	// Roles are what it may do; a process that is node and coordinator at
	// once (gatehouse demo, serve) has both.
	Roles []Role `json:"roles"`
}

// Users is the users file: the public half of the credentials, which
// the broker reads (gatehouse broker -users).
type Users struct {
	Users []User `json:"users"`
}

// LoadUsers reads a users file.
func LoadUsers(path string) ([]User, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: users file: %v", ErrAuth, err)
	}
	var u Users
	if err := json.Unmarshal(data, &u); err != nil {
		return nil, fmt.Errorf("%w: users file %s: %v", ErrAuth, path, err)
	}
	for _, us := range u.Users {
		if !nkeys.IsValidPublicUserKey(us.NKey) {
			return nil, fmt.Errorf("%w: users file %s: %q is not a public user nkey", ErrAuth, path, us.NKey)
		}
		for _, r := range us.Roles {
			if !slices.Contains(Roles, r) {
				return nil, fmt.Errorf("%w: users file %s: unknown role %q (want node, coordinator, worker or tail)", ErrAuth, path, r)
			}
		}
	}
	return u.Users, nil
}

// Credentials is a directory of credentials as MakeCredentials writes it:
// one seed file per identity (<name>.nk, readable by its owner only) and
// users.json with the public keys and roles.
type Credentials struct{ Dir string }

// Seed is the path of name's seed file.
func (c Credentials) Seed(name string) string { return filepath.Join(c.Dir, name+".nk") }

// UsersFile is the path of the users file.
func (c Credentials) UsersFile() string { return filepath.Join(c.Dir, "users.json") }

// MakeCredentials makes, in dir, an identity per name with its roles,
// keeping those that exist: a seed file each and the users file listing
// them all (and any other users it held). It returns the users.
func MakeCredentials(dir string, ids map[string][]Role) ([]User, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	c := Credentials{Dir: dir}
	var users []User
	if _, err := os.Stat(c.UsersFile()); err == nil {
		if users, err = LoadUsers(c.UsersFile()); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(ids))
	for name := range ids {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !validName(name) {
			return nil, fmt.Errorf("%w: credential name %q: letters, digits, - and _ only", ErrAuth, name)
		}
		pub, err := ensureSeed(c.Seed(name))
		if err != nil {
			return nil, err
		}
		users = slices.DeleteFunc(users, func(u User) bool { return u.Name == name })
		users = append(users, User{Name: name, NKey: pub, Roles: ids[name]})
	}
	slices.SortFunc(users, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	if _, err := c.ClusterSecret(); err != nil { // for the routes of a cluster
		return nil, err
	}
	data, _ := json.MarshalIndent(Users{Users: users}, "", "  ")
	if err := writeFile(c.UsersFile(), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	return users, nil
}

// ensureSeed returns the public key of the seed at path, making the seed
// first when there is none.
func ensureSeed(path string) (string, error) {
	if data, err := os.ReadFile(path); err == nil {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(data))))
		if err != nil {
			return "", fmt.Errorf("%w: %s is not an nkey seed: %v", ErrAuth, path, err)
		}
		return kp.PublicKey()
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrAuth, err)
	}
	seed, _ := kp.Seed()
	if err := writeFile(path, append(seed, '\n'), 0o600); err != nil {
		return "", err
	}
	return kp.PublicKey()
}

// writeFile writes data to path through a temporary file, so a reader
// never sees half of it.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("%w: %v", ErrAuth, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: %v", ErrAuth, err)
	}
	return nil
}

// clusterUser is the user name of a cluster's routes; the password is
// the cluster secret.
const clusterUser = "gatehouse-route"

// ClusterSecret returns the secret the nodes of a cluster share, from
// the credentials directory, making it on first use.
func (c Credentials) ClusterSecret() (string, error) {
	path := filepath.Join(c.Dir, "cluster.secret")
	if data, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(data)); len(s) >= 32 {
			return s, nil
		}
		return "", fmt.Errorf("%w: %s is too short for a cluster secret", ErrAuth, path)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	s := hex.EncodeToString(b[:])
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return "", fmt.Errorf("%w: %v", ErrAuth, err)
	}
	return s, writeFile(path, []byte(s+"\n"), 0o600)
}

// DefaultIDs are the identities gatehouse credentials, demo and serve
// make: one per role, and "stack" for a process that is a gateway node
// and a coordinator at once.
func DefaultIDs() map[string][]Role {
	return map[string][]Role{
		"node": {RoleNode}, "coordinator": {RoleCoordinator}, "worker": {RoleWorker}, "tail": {RoleTail},
		"stack": {RoleNode, RoleCoordinator},
	}
}

// access names what the permissions cover: the subject prefix, the event
// stream and the buckets.
type access struct {
	prefix, stream, sessions, control, live string
}

func (c Config) access() access {
	return access{prefix: c.Prefix, stream: c.Stream, sessions: c.SessionBucket, control: c.ControlBucket, live: c.LiveBucket}
}

// permissions is what an identity with roles may publish and subscribe
// to. Replies come back on _INBOX.> for everyone; nothing is allowed that
// a role does not need.
func (a access) permissions(roles []Role) *server.Permissions {
	pub, sub := map[string]bool{}, map[string]bool{"_INBOX.>": true}
	allow := func(set map[string]bool, subjects ...string) {
		for _, s := range subjects {
			set[s] = true
		}
	}
	api := "$JS.API."
	kv := func(bucket string) string { return "KV_" + bucket }
	read := func(stream string) []string { // bind, read one message, watch
		return []string{api + "INFO", api + "STREAM.INFO." + stream, api + "STREAM.MSG.GET." + stream, api + "DIRECT.GET." + stream,
			api + "DIRECT.GET." + stream + ".>", api + "CONSUMER.CREATE." + stream, api + "CONSUMER.CREATE." + stream + ".>",
			api + "CONSUMER.DELETE." + stream + ".>", api + "CONSUMER.INFO." + stream + ".>", "$JS.FC.>"}
	}
	consume := func() {
		allow(pub, read(a.stream)...)
		allow(pub, api+"CONSUMER.DURABLE.CREATE."+a.stream+".>", api+"CONSUMER.MSG.NEXT."+a.stream+".>",
			api+"CONSUMER.RESET."+a.stream+".>", "$JS.ACK."+a.stream+".>")
	}
	perm := &server.Permissions{}
	for _, r := range roles {
		switch r {
		case RoleNode:
			allow(pub, read(a.stream)...)
			allow(pub, a.prefix+".ev.>") // events
			allow(sub, a.prefix+".cmd.*")
			allow(pub, read(kv(a.sessions))...)
			allow(pub, "$KV."+a.sessions+".*.*") // session keys: <num_shards>.<shard>
			allow(pub, read(kv(a.control))...)
			allow(pub, read(kv(a.live))...)
			allow(pub, "$KV."+a.live+".node.>") // its liveness record
			// Answers to commands go to the requester's inbox.
			perm.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
		case RoleCoordinator:
			allow(pub, api+">") // it owns the streams and buckets
			allow(pub, "$KV."+a.control+".>", "$KV."+a.live+"."+"leader", "$JS.FC.>")
			allow(pub, a.prefix+".ctl.>")
			allow(sub, a.prefix+".ctl.>")
		case RoleWorker:
			consume()
			allow(pub, a.prefix+".cmd.*") // gateway commands, as requests
		case RoleTail:
			consume()
		}
	}
	perm.Publish = &server.SubjectPermission{Allow: sortedKeys(pub)}
	perm.Subscribe = &server.SubjectPermission{Allow: sortedKeys(sub)}
	return perm
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ServerAuthorization renders users as the authorization block of a
// nats-server configuration file, for an external server or cluster run
// without gatehouse broker.
func ServerAuthorization(cfg Config, users []User) (string, error) {
	cfg, err := cfg.withDefaults()
	if err != nil && cfg.URL == "" {
		cfg.URL = "nats://unused" // only the names matter here
		if cfg, err = cfg.withDefaults(); err != nil {
			return "", err
		}
	}
	a := cfg.access()
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		p := a.permissions(u.Roles)
		fmt.Fprintf(&b, "    # %s: %s\n    {\n      nkey: %s\n      permissions: {\n", u.Name, joinRoles(u.Roles), u.NKey)
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", quoteList(p.Publish.Allow))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", quoteList(p.Subscribe.Allow))
		if p.Response != nil {
			fmt.Fprintf(&b, "        allow_responses: { max: %d, expires: \"%s\" }\n", p.Response.MaxMsgs, p.Response.Expires)
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String(), nil
}

func joinRoles(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// serverUsers turns users into the embedded server's nkey users.
func (c Config) serverUsers() []*server.NkeyUser {
	a := c.access()
	out := make([]*server.NkeyUser, 0, len(c.Users))
	for _, u := range c.Users {
		out = append(out, &server.NkeyUser{Nkey: u.NKey, Permissions: a.permissions(u.Roles)})
	}
	return out
}

// ExplainAuth turns the server's refusal of credentials into an error
// that says what to do; other errors pass unchanged.
func ExplainAuth(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "authorization violation") || strings.Contains(msg, "authentication") || errors.Is(err, nats.ErrAuthorization) {
		return fmt.Errorf("%w: the broker refused this process's credentials (%v): pass the nkey seed of an identity it admits (-nats-nkey FILE; gatehouse credentials makes them, gatehouse demo and serve print where theirs are)", ErrAuth, err)
	}
	return err
}

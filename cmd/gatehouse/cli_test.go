package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// TestOperatorCommands runs status, lookup, drain and reshard against a
// coordinator with one node reporting three shards ready and one offline.
func TestOperatorCommands(t *testing.T) {
	co, err := coord.New(coord.Config{Tokens: coord.Tokens{Admin: "adm", Node: "nod", Status: "sta"}, ShardCount: 4, MaxConcurrency: 2,
		IdentifyMargin: -1, SessionStarts: 100, SessionStartTotal: 100, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(co.Handler())
	defer srv.Close()
	held := takeAllShards(t, srv.URL, "node-a", "nod", func(shard int) string {
		if shard == 3 {
			return `"state":"offline","guilds":900`
		}
		return `"state":"ready","guilds":900`
	})

	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append(args, "-coordinator", srv.URL), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	t.Setenv("GATEHOUSE_STATUS_TOKEN", "sta")
	t.Setenv("GATEHOUSE_ADMIN_TOKEN", "adm")

	out, err := cli("status")
	var ue unhealthyError
	if !errors.As(err, &ue) || ue.n != 1 {
		t.Errorf("status with a shard offline: %v, want unhealthyError{1}", err)
	}
	for _, want := range []string{"1 offline, 3 ready", "node-a", "Shards not online (1)", "3600 guilds reported", "100 session starts left"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	out, err = cli("status", "-json")
	var js struct {
		Shards coordapi.ShardList `json:"shards"`
	}
	if json.Unmarshal([]byte(out), &js) != nil || len(js.Shards.Shards) != 4 || err == nil {
		t.Errorf("status -json: %v\n%s", err, out)
	}

	const guild = 81384788765712384
	out, err = cli("lookup", fmt.Sprint(guild))
	if want := fmt.Sprintf("shard %d of 4, run by node node-a, ready (900 guilds on the shard)", (guild>>22)%4); err != nil || !strings.Contains(out, want) {
		t.Errorf("lookup: %v\n%s", err, out)
	}
	if _, err := cli("lookup", "general"); !errors.As(err, new(usageError)) {
		t.Errorf("lookup of a word: %v, want a usage error", err)
	}

	out, err = cli("drain", "node-a")
	if err != nil || !strings.Contains(out, "drain node-a: done") {
		t.Errorf("drain: %v\n%s", err, out)
	}
	if o := nodeBeat(t, srv.URL, "node-a", "nod", `{"shards":`+held+`}`); len(o["revoke"].([]any)) != 0 {
		// With no other node the drained node keeps its shards.
		t.Errorf("drained node alone was told to stop shards: %v", o["revoke"])
	}

	out, err = cli("reshard", "-to", "8", "-dry-run")
	if err != nil || !strings.Contains(out, "Reshard 4 → 8 shards: 8 identifies in 4 rounds") {
		t.Errorf("reshard -dry-run: %v\n%s", err, out)
	}
	if _, err := cli("reshard", "-to", "7", "-dry-run"); err == nil || !strings.Contains(err.Error(), "multiple of max_concurrency 2: try 8") {
		t.Errorf("reshard to 7 at max_concurrency 2: %v", err)
	}
	if out, err := cli("reshard", "-to", "8", "-wait=false"); err != nil || !strings.Contains(out, "reshard to 8 started") {
		t.Errorf("starting a reshard: %v\n%s", err, out)
	}
	if _, err := cli("reshard", "-to", "8", "-wait=false"); err == nil || !strings.Contains(err.Error(), "under way") {
		t.Errorf("a second reshard while one runs: %v, want the coordinator's 409", err)
	}
	if _, err := cli("reshard", "-to", "200", "-dry-run"); err == nil || !strings.Contains(err.Error(), "session-start budget has 100 left") {
		t.Errorf("reshard over the budget: %v", err)
	}

	// Errors say what is wrong.
	t.Setenv("GATEHOUSE_STATUS_TOKEN", "wrong")
	t.Setenv("GATEHOUSE_ADMIN_TOKEN", "")
	if _, err := cli("status"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("status with a bad token: %v", err)
	}
	var out2 bytes.Buffer
	if err := run(context.Background(), []string{"status", "-coordinator", "ftp://x", "-token", "t"}, &out2, io.Discard); !errors.As(err, new(usageError)) {
		t.Errorf("status with a bad URL: %v", err)
	}
}

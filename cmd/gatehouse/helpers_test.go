package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// nodeBeat posts one heartbeat of node to the coordinator at base and
// returns its orders.
func nodeBeat(t *testing.T, base, node, token, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/nodes/"+node+"/heartbeat", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o map[string]any
	json.NewDecoder(resp.Body).Decode(&o)
	return o
}

// takeAllShards has node take every shard the coordinator assigns it and
// report each one: report returns the report's fields after "shard". It
// returns the node's held shards as the JSON array later heartbeats send.
func takeAllShards(t *testing.T, base, node, token string, report func(shard int) string) (held string) {
	t.Helper()
	o := nodeBeat(t, base, node, token, `{"shards":[]}`)
	var hs, reports []string
	for _, a := range o["assign"].([]any) {
		h := a.(map[string]any)
		shard := int(h["shard"].(float64))
		hs = append(hs, fmt.Sprintf(`{"shard":%d,"token":%d}`, shard, uint64(h["token"].(float64))))
		reports = append(reports, fmt.Sprintf(`{"shard":%d,%s}`, shard, report(shard)))
	}
	held = "[" + strings.Join(hs, ",") + "]"
	nodeBeat(t, base, node, token, `{"shards":`+held+`,"reports":[`+strings.Join(reports, ",")+`]}`)
	return held
}

// newBrowser starts headless Chromium for a test, or skips the test when
// none is installed (outside CI, where it must be). The browser runs on
// the returned context itself: one started under a step's shorter context
// would close with it.
func newBrowser(t *testing.T, width, height int, limit time.Duration) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a browser")
	}
	exe := chromium()
	if exe == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium in CI: .ci/run installs it")
		}
		t.Skip("no chromium installed (apt install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(width, height))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(bctx, limit)
	t.Cleanup(func() { cancel(); bcancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	return ctx
}

// countSel returns how many elements of the page match the CSS selector.
func countSel(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

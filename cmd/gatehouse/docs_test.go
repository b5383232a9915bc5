package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestFlagsDocumented: every flag of every long-running command appears in
// the README, as `-name`.
func TestFlagsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	flagLine := regexp.MustCompile(`(?m)^  (-[a-z0-9-]+)`)
	for _, cmd := range []string{"demo", "serve", "sim", "gateway", "coordinator", "broker", "tail", "status", "lookup", "drain", "reshard", "plan", "chaos", "credentials"} {
		var out bytes.Buffer
		run(context.Background(), []string{cmd, "-help"}, &out, &out)
		flags := flagLine.FindAllStringSubmatch(out.String(), -1)
		if len(flags) == 0 {
			t.Errorf("%s -help listed no flags:\n%s", cmd, out.String())
		}
		for _, f := range flags {
			if !strings.Contains(string(readme), "`"+f[1]) {
				t.Errorf("gatehouse %s %s is not documented in README.md", cmd, f[1])
			}
		}
	}
}

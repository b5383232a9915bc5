package main

import (
	"context"
	"testing"
	"time"
)

func TestShouldTrim(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const mib = 1 << 20
	prev := memSample{at: t0, numGC: 10, live: 20 * mib, retained: 60 * mib}
	at := func(d time.Duration, numGC, live, retained uint64) memSample {
		return memSample{at: t0.Add(d), numGC: numGC, live: live * mib, retained: retained * mib}
	}
	never := memSample{}
	trimmedAt := func(d time.Duration) memSample { return memSample{at: t0.Add(d)} }
	tests := []struct {
		name string
		cur  memSample
		last memSample
		want bool
	}{
		{"quiet heap holding three times its live size", at(5*time.Second, 10, 20, 60), never, true},
		{"a collection ran since the last look", at(5*time.Second, 11, 20, 60), never, false},
		{"trimmed 10s ago", at(5*time.Second, 10, 20, 60), trimmedAt(-5 * time.Second), false},
		{"trimmed 20s ago", at(5*time.Second, 10, 20, 60), trimmedAt(-15 * time.Second), true},
		{"excess under 4 MiB", at(5*time.Second, 10, 20, 23), never, false},
		{"excess under a quarter of a large heap", at(5*time.Second, 10, 400, 480), never, false},
		{"excess over a quarter of a large heap", at(5*time.Second, 10, 400, 520), never, true},
		{"retained below live", at(5*time.Second, 10, 20, 10), never, false},
	}
	for _, tt := range tests {
		if got := shouldTrim(prev, tt.cur, tt.last); got != tt.want {
			t.Errorf("%s: shouldTrim = %v, want %v", tt.name, got, tt.want)
		}
	}
	// Stacks grown since the last trim count too.
	grown := at(5*time.Second, 10, 16, 18)
	grown.stacks = 9 * mib
	if !shouldTrim(prev, grown, memSample{at: t0.Add(-time.Minute), stacks: 5 * mib}) {
		t.Error("2 MiB of heap and 4 MiB of grown stacks: shouldTrim = false, want true")
	}
	if shouldTrim(prev, grown, memSample{at: t0.Add(-time.Minute), stacks: 9 * mib}) {
		t.Error("2 MiB of heap, stacks as at the last trim: shouldTrim = true, want false")
	}
}

func TestTrimMemoryStops(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { trimMemory(ctx, time.Millisecond); close(done) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("trimMemory did not return after its context ended")
	}
}

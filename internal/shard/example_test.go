package shard_test

import (
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/shard"
)

func ExampleParseSet() {
	ids, err := shard.ParseSet("0,2,5-7", 8)
	fmt.Println(ids, err)
	_, err = shard.ParseSet("5-9", 8)
	fmt.Println(err)
	// Output:
	// [0 2 5 6 7] <nil>
	// shard 9 is out of range for 8 shards
}

func ExampleForGuild() {
	fmt.Println(shard.ForGuild(41771983423143937, 16))
	// Output: 6
}

func ExamplePlanner_Plan() {
	p, err := shard.NewPlanner(shard.Config{}) // the defaults
	if err != nil {
		fmt.Println(err)
		return
	}
	now := time.Date(2026, 8, 6, 12, 0, 0, 0, time.UTC)

	// 20 shards of about 1,000 guilds, one of them hot.
	guilds := map[int]int{}
	for s := range 20 {
		guilds[s] = 1000
	}
	guilds[17] = 2410
	var st shard.State
	d, st, err := p.Plan(shard.Input{Recommended: 20, MaxConcurrency: 1, Current: 20, Guilds: guilds, Now: now}, st)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.Action, d.Count)
	fmt.Println(d.Reason)
	fmt.Println(shard.StartTime(d.Count, 1, 5*time.Second))
	// Output:
	// grow 22
	// shard 17 holds 2,410 guilds, over the 2,250 high-water mark: grow from 20 to 22 shards
	// 1m50s
}

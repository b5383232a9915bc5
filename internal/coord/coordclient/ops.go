package coordclient

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// The calls operators' tools make. Each returns the coordinator's answer,
// or an error carrying its message; errors wrap ErrRefused when a retry
// cannot help (a bad token, a bad request).

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (coordapi.Status, error) {
	var st coordapi.Status
	return st, c.get(ctx, "/v1/status", &st)
}

// Shards is GET /v1/shards.
func (c *Client) Shards(ctx context.Context) (coordapi.ShardList, error) {
	var l coordapi.ShardList
	return l, c.get(ctx, "/v1/shards", &l)
}

// Planner is GET /v1/planner.
func (c *Client) Planner(ctx context.Context) (coordapi.PlannerState, error) {
	var p coordapi.PlannerState
	return p, c.get(ctx, "/v1/planner", &p)
}

// Guild is GET /v1/guilds/{guild_id}.
func (c *Client) Guild(ctx context.Context, id uint64) (coordapi.GuildAnswer, error) {
	var g coordapi.GuildAnswer
	return g, c.get(ctx, "/v1/guilds/"+strconv.FormatUint(id, 10), &g)
}

// Command is POST /v1/commands.
func (c *Client) Command(ctx context.Context, req coordapi.CommandRequest) (coordapi.CommandResult, error) {
	var res coordapi.CommandResult
	return res, c.postJSON(ctx, "/v1/commands", req, &res)
}

// PlanReshard is POST /v1/reshard with dry_run: the plan, nothing started.
func (c *Client) PlanReshard(ctx context.Context, req coordapi.ReshardRequest) (coordapi.ReshardPlan, error) {
	req.DryRun = true
	var p coordapi.ReshardPlan
	return p, c.postJSON(ctx, "/v1/reshard", req, &p)
}

// StartReshard is POST /v1/reshard: the reshard starts once its plan fits.
func (c *Client) StartReshard(ctx context.Context, req coordapi.ReshardRequest) (coordapi.ReshardStarted, error) {
	req.DryRun = false
	var st coordapi.ReshardStarted
	return st, c.postJSON(ctx, "/v1/reshard", req, &st)
}

// Reshard is GET /v1/reshard: the reshard under way or the last one, nil
// when there was none.
func (c *Client) Reshard(ctx context.Context) (*coordapi.Reshard, error) {
	var st coordapi.ReshardState
	return st.Reshard, c.get(ctx, "/v1/reshard", &st)
}

// get sends a GET and decodes the JSON answer into out.
func (c *Client) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://replica"+path, nil)
	if err != nil {
		return err
	}
	return c.do(req, out)
}

package coord

import (
	"fmt"
	"net/http"
)

// twilightQueue is twilight's gateway-queue: a request for ?shard=N is
// answered only when that shard may identify. Any method is accepted and
// the body is ignored, as in the original.
func (c *Coordinator) twilightQueue(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if !q.Has("shard") {
		return fmt.Errorf("%w: missing ?shard=N", ErrBadRequest)
	}
	shard, err := c.parseShard(q.Get("shard"))
	if err != nil {
		return err
	}
	if err := c.waitIdentify(r.Context(), shard); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

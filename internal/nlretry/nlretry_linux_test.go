package nlretry

import (
	"errors"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestDump(t *testing.T) {
	t.Parallel()
	other := errors.New("permission denied")
	tests := []struct {
		name      string
		results   []error // what each call returns, in order
		wantCalls int
		wantList  []int
		wantErr   error
	}{
		{name: "consistent at once", results: []error{nil}, wantCalls: 1, wantList: []int{1}},
		{name: "interrupted twice", results: []error{netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, nil}, wantCalls: 3, wantList: []int{3}},
		{name: "other error at once", results: []error{other}, wantCalls: 1, wantList: []int{1}, wantErr: other},
		{name: "always interrupted", results: slices.Repeat([]error{netlink.ErrDumpInterrupted}, Attempts+1), wantCalls: Attempts, wantErr: netlink.ErrDumpInterrupted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			got, err := Dump(func() ([]int, error) {
				calls++
				// A partial list comes with an interruption, as netlink returns it.
				return []int{calls}, tc.results[calls-1]
			})
			if calls != tc.wantCalls {
				t.Errorf("dump called %d times, want %d", calls, tc.wantCalls)
			}
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.wantList) {
				t.Errorf("list = %v, want %v", got, tc.wantList)
			}
		})
	}
}

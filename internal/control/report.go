package control

// POST /v1/triplets: what the store holds for a batch of triplets named
// as a mail log names them (greyd report). Read-only: each triplet is
// looked up as explain does, by a dry step that writes nothing.
//
//	POST /v1/triplets   {"triplets": [{"client_address","client_name","sender","recipient"}, ...]}
//	                    → {"triplets": [{"triplet": {...}} or {"error": "..."}, ...]}

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"greyd/internal/greylist"
	"greyd/internal/policy"
)

// TripletQuery is one triplet of POST /v1/triplets, as Postfix named its
// parts in the request (and in its log).
type TripletQuery struct {
	ClientAddress string `json:"client_address"`
	// ClientName is the verified name; "" is "unknown".
	ClientName string `json:"client_name,omitempty"`
	// Sender "" or "<>" is the null sender.
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
}

// TripletsQuery is the body of POST /v1/triplets.
type TripletsQuery struct {
	Triplets []TripletQuery `json:"triplets"`
}

// TripletsAnswer is the answer of POST /v1/triplets: one TripletAnswer
// per query, in order.
type TripletsAnswer struct {
	Triplets []TripletAnswer `json:"triplets"`
}

// TripletAnswer is what the store holds for one triplet: its key's entry
// and, under lookup_by "auto", the network's entry read alongside
// (Triplet.Subnet), as explain shows them. Error says why a triplet
// could not be looked up (a client address that is not one); Triplet is
// nil then.
type TripletAnswer struct {
	Triplet *TripletState `json:"triplet,omitempty"`
	Error   string        `json:"error,omitempty"`
}

// MaxTriplets is the most triplets one POST /v1/triplets may ask about.
const MaxTriplets = 10000

// maxTripletsBody bounds the body: MaxTriplets of long addresses.
const maxTripletsBody = 32 << 20

func (s *Server) triplets(w http.ResponseWriter, r *http.Request) {
	var in TripletsQuery
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxTripletsBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "body: %v", err)
		return
	}
	if len(in.Triplets) > MaxTriplets {
		writeError(w, http.StatusBadRequest, "%d triplets: at most %d per request", len(in.Triplets), MaxTriplets)
		return
	}
	out := TripletsAnswer{Triplets: make([]TripletAnswer, len(in.Triplets))}
	for i, q := range in.Triplets {
		if r.Context().Err() != nil {
			return // the client is gone
		}
		req, msg := tripletRequest(q)
		if msg != "" {
			out.Triplets[i].Error = msg
			continue
		}
		x := s.opts.Engine.Explain(r.Context(), req)
		switch {
		case x.Decision.Action == greylist.Skip:
			out.Triplets[i].Error = x.Decision.Warning
			continue
		case x.Decision.Action == greylist.Failed:
			storeError(w, fmt.Sprintf("looking up triplet %d", i+1), x.Decision.Err)
			return
		case x.StoreErr != nil:
			storeError(w, fmt.Sprintf("looking up triplet %d", i+1), x.StoreErr)
			return
		case x.Input.TripletKey == "":
			out.Triplets[i].Error = "no triplet key"
			continue
		}
		out.Triplets[i].Triplet = requestTriplet(x)
	}
	writeJSON(w, http.StatusOK, out)
}

// tripletRequest is q as Postfix sends it at RCPT time, as explain builds
// it; or why it cannot be one.
func tripletRequest(q TripletQuery) (*policy.Request, string) {
	addr, name, sender, rcpt := q.ClientAddress, q.ClientName, q.Sender, q.Recipient
	if addr == "" || rcpt == "" {
		return nil, "a triplet needs client_address and recipient"
	}
	if name == "" {
		name = "unknown"
	}
	if sender == "<>" {
		sender = ""
	}
	for _, v := range []string{addr, name, sender, rcpt} {
		if strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Sprintf("attribute values cannot contain line breaks: %q", v)
		}
	}
	return policy.ParseRequest("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=" + addr +
		"\nclient_name=" + name + "\nsender=" + sender + "\nrecipient=" + rcpt + "\netrn_domain=\n"), ""
}

// Triplets asks what the daemon holds for each triplet, at most
// MaxTriplets at a time. A daemon older than this client has no POST
// /v1/triplets: it is then asked triplet by triplet (GET /v1/explain),
// and perTriplet says so.
func (c *Client) Triplets(ctx context.Context, qs []TripletQuery) (out []TripletAnswer, perTriplet bool, err error) {
	b, err := json.Marshal(TripletsQuery{Triplets: qs})
	if err != nil {
		return nil, false, err
	}
	var a TripletsAnswer
	err = c.getJSON(ctx, "POST", "/v1/triplets", nil, bytes.NewReader(b), &a)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && strings.HasPrefix(ae.Message, "no endpoint ") {
		out, err = c.explainEach(ctx, qs)
		return out, true, err
	}
	if err != nil {
		return nil, false, err
	}
	if len(a.Triplets) != len(qs) {
		return nil, false, fmt.Errorf("control socket %s: %d answers for %d triplets", c.Socket, len(a.Triplets), len(qs))
	}
	return a.Triplets, false, nil
}

// explainEach asks explain about each triplet.
func (c *Client) explainEach(ctx context.Context, qs []TripletQuery) ([]TripletAnswer, error) {
	out := make([]TripletAnswer, len(qs))
	for i, q := range qs {
		sender := q.Sender
		if sender == "" {
			sender = "<>"
		}
		x, err := c.Explain(ctx, q.ClientAddress, q.ClientName, sender, q.Recipient)
		var ae *APIError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusBadRequest:
			out[i].Error = ae.Message
		case err != nil:
			return nil, err
		case x.StoreError != "":
			return nil, fmt.Errorf("looking up triplet %d: %s (greyd stats shows the store's health)", i+1, x.StoreError)
		case x.Triplet == nil:
			out[i].Error = x.Warning
			if out[i].Error == "" {
				out[i].Error = "no triplet key"
			}
		default:
			out[i].Triplet = x.Triplet
		}
	}
	return out, nil
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	sluice "sluice.dev/producers/examples/go"
)

// Vector is one entry of the shared vectors' "valid" or "invalid" list.
type Vector struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Key       string          `json:"key"`
	Partition int             `json:"partition"`
	Field     string          `json:"field"`
	Event     json.RawMessage `json:"event"`
}

// Vectors is the shared vectors file (schemas/vectors/README.md).
type Vectors struct {
	Partitions int      `json:"partitions"`
	Valid      []Vector `json:"valid"`
	Invalid    []Vector `json:"invalid"`
}

// ReadVectors parses the vectors file.
func ReadVectors(path string) (*Vectors, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v Vectors
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return &v, nil
}

// LoadValid returns the names and typed events of the valid vectors.
func LoadValid(path string) ([]string, []sluice.Event, error) {
	v, err := ReadVectors(path)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(v.Valid))
	events := make([]sluice.Event, len(v.Valid))
	for i, vec := range v.Valid {
		names[i] = vec.Name
		if events[i], err = Typed(vec.Kind, vec.Event); err != nil {
			return nil, nil, fmt.Errorf("vector %s: %w", vec.Name, err)
		}
	}
	return names, events, nil
}

// wire is every field of any kind, as JSON carries it.
type wire struct {
	EventID     string  `json:"event_id"`
	TenantID    string  `json:"tenant_id"`
	OccurredAt  string  `json:"occurred_at"`
	CampaignID  string  `json:"campaign_id"`
	Keyword     string  `json:"keyword"`
	Geo         string  `json:"geo"`
	Engine      string  `json:"engine"`
	Device      string  `json:"device"`
	URL         *string `json:"url"`
	Position    *int    `json:"position"`
	StatusCode  int     `json:"status_code"`
	FetchMs     int64   `json:"fetch_ms"`
	Bytes       int64   `json:"bytes"`
	ContentHash *string `json:"content_hash"`
	ShortCode   string  `json:"short_code"`
	Referrer    *string `json:"referrer"`
	Country     *string `json:"country"`
	UserAgent   *string `json:"user_agent"`
	VisitorID   *string `json:"visitor_id"`
}

// Typed rebuilds a vector's event as the typed value a service would have in hand.
func Typed(kind string, doc json.RawMessage) (sluice.Event, error) {
	var w wire
	if err := json.Unmarshal(doc, &w); err != nil {
		return nil, err
	}
	at, err := time.Parse(time.RFC3339Nano, w.OccurredAt)
	if err != nil {
		return nil, fmt.Errorf("occurred_at: %w", err)
	}
	switch kind {
	case "rank":
		return sluice.RankEvent{EventID: w.EventID, TenantID: w.TenantID, OccurredAt: at, CampaignID: w.CampaignID,
			Keyword: w.Keyword, Geo: w.Geo, Engine: w.Engine, Device: w.Device, URL: w.URL, Position: w.Position}, nil
	case "crawl":
		url := ""
		if w.URL != nil {
			url = *w.URL
		}
		return sluice.CrawlEvent{EventID: w.EventID, TenantID: w.TenantID, OccurredAt: at, CampaignID: w.CampaignID,
			URL: url, StatusCode: w.StatusCode, FetchMs: w.FetchMs, Bytes: w.Bytes, ContentHash: w.ContentHash}, nil
	case "click":
		return sluice.ClickEvent{EventID: w.EventID, TenantID: w.TenantID, OccurredAt: at, ShortCode: w.ShortCode,
			Referrer: w.Referrer, Country: w.Country, UserAgent: w.UserAgent, VisitorID: w.VisitorID}, nil
	}
	return nil, fmt.Errorf("unknown event kind %q; accepted: rank, crawl, click", kind)
}

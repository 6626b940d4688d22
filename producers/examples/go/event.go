// Package sluice publishes Sluice rank, crawl and click events from Go: typed events, checked against
// the contract's JSON Schema files (schemas/json), keyed "{tenant_id}/{entity}", and produced with
// franz-go's idempotent producer and its Kafka-compatible murmur2 partitioner.
package sluice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// SchemaVersion is the contract version these types write.
const SchemaVersion = 1

// TimeLayout is how occurred_at is written: UTC, "Z", exactly six fractional digits.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Kinds of event, in the order of the contract.
var Kinds = []string{"rank", "crawl", "click"}

// Event is one of RankEvent, CrawlEvent, ClickEvent.
type Event interface {
	// Kind is "rank", "crawl" or "click".
	Kind() string
	// ID is the event_id: the idempotency key a retry re-sends.
	ID() string
	// Key is the record key: "{tenant_id}/{campaign_id}", or "{tenant_id}/{short_code}" for clicks.
	Key() string
	// Document is the event's JSON object: every field, nil (null) for an absent optional one.
	Document() map[string]any
}

// RankEvent is a keyword position check. Position is nil when the keyword did not rank.
type RankEvent struct {
	EventID, TenantID   string
	OccurredAt          time.Time
	CampaignID, Keyword string
	Geo, Engine, Device string
	URL                 *string
	Position            *int
}

// CrawlEvent is one page fetch.
type CrawlEvent struct {
	EventID, TenantID string
	OccurredAt        time.Time
	CampaignID, URL   string
	StatusCode        int
	FetchMs, Bytes    int64
	ContentHash       *string
}

// ClickEvent is one click on a short link.
type ClickEvent struct {
	EventID, TenantID                       string
	OccurredAt                              time.Time
	ShortCode                               string
	Referrer, Country, UserAgent, VisitorID *string
}

func (e RankEvent) Kind() string  { return "rank" }
func (e CrawlEvent) Kind() string { return "crawl" }
func (e ClickEvent) Kind() string { return "click" }

func (e RankEvent) ID() string  { return e.EventID }
func (e CrawlEvent) ID() string { return e.EventID }
func (e ClickEvent) ID() string { return e.EventID }

func (e RankEvent) Key() string  { return e.TenantID + "/" + e.CampaignID }
func (e CrawlEvent) Key() string { return e.TenantID + "/" + e.CampaignID }
func (e ClickEvent) Key() string { return e.TenantID + "/" + e.ShortCode }

func common(id, tenant string, at time.Time) map[string]any {
	return map[string]any{
		"schema_version": SchemaVersion, "event_id": id, "tenant_id": tenant,
		"occurred_at": at.UTC().Format(TimeLayout),
	}
}

func (e RankEvent) Document() map[string]any {
	d := common(e.EventID, e.TenantID, e.OccurredAt)
	d["campaign_id"], d["keyword"], d["geo"], d["engine"], d["device"] = e.CampaignID, e.Keyword, e.Geo, e.Engine, e.Device
	d["url"], d["position"] = e.URL, e.Position
	return d
}

func (e CrawlEvent) Document() map[string]any {
	d := common(e.EventID, e.TenantID, e.OccurredAt)
	d["campaign_id"], d["url"], d["status_code"] = e.CampaignID, e.URL, e.StatusCode
	d["fetch_ms"], d["bytes"], d["content_hash"] = e.FetchMs, e.Bytes, e.ContentHash
	return d
}

func (e ClickEvent) Document() map[string]any {
	d := common(e.EventID, e.TenantID, e.OccurredAt)
	d["short_code"], d["referrer"], d["country"] = e.ShortCode, e.Referrer, e.Country
	d["user_agent"], d["visitor_id"] = e.UserAgent, e.VisitorID
	return d
}

// InvalidEvent is an event the contract refuses; Field names the offending field.
type InvalidEvent struct {
	Kind, Field, Message string
}

func (e *InvalidEvent) Error() string {
	return fmt.Sprintf("invalid %s event: %s: %s", e.Kind, e.Field, e.Message)
}

// Validator checks documents against the contract's JSON Schema files.
type Validator struct {
	schemas map[string]*jsonschema.Schema
}

// NewValidator compiles {rank,crawl,click}.schema.json from dir (the repository's schemas/json).
func NewValidator(dir string) (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	v := &Validator{schemas: map[string]*jsonschema.Schema{}}
	for _, k := range Kinds {
		path := filepath.Join(dir, k+".schema.json")
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reading JSON Schema: %w", err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", path, err)
		}
		url := "file:///sluice/" + k + ".schema.json"
		if err := c.AddResource(url, doc); err != nil {
			return nil, err
		}
		if v.schemas[k], err = c.Compile(url); err != nil {
			return nil, fmt.Errorf("compiling %s: %w", path, err)
		}
	}
	return v, nil
}

// Validate returns an *InvalidEvent naming the first offending field, or nil.
func (v *Validator) Validate(kindName string, document []byte) error {
	schema, ok := v.schemas[kindName]
	if !ok {
		return fmt.Errorf("unknown event kind %q; accepted: rank, crawl, click", kindName)
	}
	instance, err := jsonschema.UnmarshalJSON(bytes.NewReader(document))
	if err != nil {
		return &InvalidEvent{kindName, "(event)", err.Error()}
	}
	err = schema.Validate(instance)
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	return &InvalidEvent{kindName, fieldOf(ve), ve.Error()}
}

// fieldOf names the field of the first leaf error: its instance location, or the missing property.
func fieldOf(e *jsonschema.ValidationError) string {
	for len(e.Causes) > 0 {
		e = e.Causes[0]
	}
	if len(e.InstanceLocation) > 0 {
		return e.InstanceLocation[0]
	}
	if r, ok := e.ErrorKind.(*kind.Required); ok && len(r.Missing) > 0 {
		return r.Missing[0]
	}
	return "(event)"
}

// Encode validates an event and returns its record value (JSON, UTF-8).
func (v *Validator) Encode(e Event) ([]byte, error) {
	value, err := json.Marshal(e.Document())
	if err != nil {
		return nil, err
	}
	if err := v.Validate(e.Kind(), value); err != nil {
		return nil, err
	}
	return value, nil
}

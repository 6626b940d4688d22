// Command send is the Go example's entry of the producer contract (README.md):
//
//	run.sh send --brokers B --vectors events.json --topic-rank T --topic-crawl T --topic-click T
//
// It builds each valid vector's event as typed values, publishes them through sluice.Producer and prints
// one JSON line per delivered record: {"name", "topic", "partition", "offset"}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	sluice "sluice.dev/producers/examples/go"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "send: error: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 || args[0] != "send" {
		return fmt.Errorf("usage: send --brokers B --vectors F --topic-rank T --topic-crawl T --topic-click T")
	}
	flags := flag.NewFlagSet("send", flag.ContinueOnError)
	brokers := flags.String("brokers", "", "Kafka bootstrap servers, comma-separated")
	vectors := flags.String("vectors", "", "the shared test vectors (schemas/vectors/events.json)")
	schemas := flags.String("schemas", os.Getenv("SLUICE_SCHEMAS_DIR"), "directory of {rank,crawl,click}.schema.json")
	topics := sluice.Topics{}
	topicFlags := map[string]*string{}
	for _, k := range sluice.Kinds {
		topicFlags[k] = flags.String("topic-"+k, "", "topic of "+k+" events")
	}
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}
	for name, v := range map[string]string{"--brokers": *brokers, "--vectors": *vectors, "--schemas (or SLUICE_SCHEMAS_DIR)": *schemas} {
		if v == "" {
			return fmt.Errorf("%s is required", name)
		}
	}
	for k, t := range topicFlags {
		if *t == "" {
			return fmt.Errorf("--topic-%s is required", k)
		}
		topics[k] = *t
	}
	names, events, err := LoadValid(*vectors)
	if err != nil {
		return err
	}
	producer, err := sluice.NewProducer(strings.Split(*brokers, ","), *schemas, topics)
	if err != nil {
		return err
	}
	defer producer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deliveries, err := producer.SendAll(ctx, events)
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	for i, d := range deliveries {
		line := map[string]any{"name": names[i], "topic": d.Topic, "partition": d.Partition, "offset": d.Offset}
		if err := out.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

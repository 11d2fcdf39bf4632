// Command kstatus prints what sigs.k8s.io/cli-utils' kstatus (the health check of Flux, Argo CD
// and kpt) computes for Kubernetes objects: Current, InProgress, Failed, Terminating, NotFound or
// Unknown, with its message. It reads a stream of JSON objects (or Lists of them) on stdin and
// writes one JSON line per object on stdout, in order:
//
//	{"kind":"Container","namespace":"ns","name":"web","status":"Failed","message":"...","conditions":[...]}
//
// The e2e tests build it (scripts/kstatus/build-kstatus.sh) so that hyperlet's status is judged
// by the real library, not by a reimplementation of its rules.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Kind       string             `json:"kind"`
	Namespace  string             `json:"namespace"`
	Name       string             `json:"name"`
	Status     string             `json:"status"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions"`
}

// computeAll writes the result of obj, or of each item when obj is a List (kubectl get -o json).
func computeAll(out *json.Encoder, obj map[string]interface{}) error {
	if items, ok := obj["items"].([]interface{}); ok {
		for i, item := range items {
			o, ok := item.(map[string]interface{})
			if !ok {
				return fmt.Errorf("cannot read item %d of the list: not an object", i)
			}
			if err := compute(out, o); err != nil {
				return err
			}
		}
		return nil
	}
	return compute(out, obj)
}

func compute(out *json.Encoder, obj map[string]interface{}) error {
	u := &unstructured.Unstructured{Object: obj}
	res, err := status.Compute(u)
	if err != nil {
		return fmt.Errorf("cannot compute the status of %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	conditions := res.Conditions
	if conditions == nil {
		conditions = []status.Condition{}
	}
	return out.Encode(result{
		Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName(),
		Status: res.Status.String(), Message: res.Message, Conditions: conditions,
	})
}

func main() {
	in := json.NewDecoder(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for {
		var raw json.RawMessage
		err := in.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "cannot read a JSON object on stdin: %v\n", err)
			os.Exit(2)
		}
		// apimachinery's decoder keeps whole numbers int64, as unstructured objects need them.
		var obj map[string]interface{}
		if err := utiljson.Unmarshal(raw, &obj); err != nil {
			fmt.Fprintf(os.Stderr, "cannot read a JSON object on stdin: %v\n", err)
			os.Exit(2)
		}
		if err := computeAll(out, obj); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

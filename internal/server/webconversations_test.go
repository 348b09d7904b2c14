package server

import (
	"bytes"
	"mime/multipart"
	"net/url"
	"strings"

	"github.com/custodia/custodia/internal/ids"
)

// The conversation pages: the cells of their API counterparts
// (conversations_matrix_test.go), a change leading to the conversation's
// page.
func init() {
	member := `
		org-admin           404 404 404 404
		org-manager         404 404 404 404
		study-admin         404 404 404 404
		data-manager        404 404 404 404
		site-investigator   404 404 404 404
		monitor             404 404 404 404
		care-provider       200 404 404 404
		participant         200 404 404 404`
	list := strings.Replace(strings.Replace(member, "care-provider       200 404 404 404", "care-provider       200 200 200 404", 1),
		"participant         200 404 404 404", "participant         200 200 200 404", 1)
	matrix = append(matrix,
		matrixRow{Route: "GET /orgs/{org}/conversations", Grid: list},
		matrixRow{Route: "POST /orgs/{org}/conversations", Grid: member},
		matrixRow{Route: "GET /orgs/{org}/conversations/{conversation}", Grid: member},
		matrixRow{Route: "POST /orgs/{org}/conversations/{conversation}/messages", Grid: member},
		matrixRow{Route: "POST /orgs/{org}/conversations/{conversation}/attachments", Grid: member},
		matrixRow{Route: "GET /orgs/{org}/conversations/{conversation}/attachments/{attachment}", Grid: member},
	)
	convOf := func(tag string) convTarget {
		ct, ok := convTargets[tag]
		if !ok { // a request without a session: ids of nothing
			ct = convTarget{participant: ids.New(), conversation: ids.New(), attachment: ids.New()}
		}
		return ct
	}
	page := func(tg target, tag string) string {
		return "/orgs/" + tg.org + "/conversations/" + convOf(tag).conversation
	}
	targetedProbes["GET /orgs/{org}/conversations"] = func(tg target, _ string) probe {
		return probe{path: "/orgs/" + tg.org + "/conversations"}
	}
	targetedProbes["POST /orgs/{org}/conversations"] = func(tg target, tag string) probe {
		return formProbe("/orgs/"+tg.org+"/conversations", url.Values{"participant": {convOf(tag).participant}, "member": {convCarer}})
	}
	targetedProbes["GET /orgs/{org}/conversations/{conversation}"] = func(tg target, tag string) probe {
		return probe{path: page(tg, tag)}
	}
	targetedProbes["POST /orgs/{org}/conversations/{conversation}/messages"] = func(tg target, tag string) probe {
		return formProbe(page(tg, tag)+"/messages", url.Values{"body": {"matrix page " + tag}})
	}
	targetedProbes["POST /orgs/{org}/conversations/{conversation}/attachments"] = func(tg target, tag string) probe {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		w, _ := mw.CreateFormFile("file", "matrix.pdf")
		w.Write([]byte("%PDF-1.4 matrix page " + tag))
		mw.Close()
		return probe{path: page(tg, tag) + "/attachments", ctype: mw.FormDataContentType(), body: b.String()}
	}
	targetedProbes["GET /orgs/{org}/conversations/{conversation}/attachments/{attachment}"] = func(tg target, tag string) probe {
		return probe{path: page(tg, tag) + "/attachments/" + convOf(tag).attachment}
	}
}

// Export progress (LIFE-04): a study's export is streamed by the server
// as it is read; for a large study the page says how much has arrived,
// then hands the file to the browser. Without streams, or when the server
// answers with a page instead of the file (a confirmation of identity is
// wanted, say), the link is followed as a plain link.
(function () {
  "use strict";
  var status = document.getElementById("export-progress");
  if (!status || !window.fetch || !window.ReadableStream || !window.URL || !URL.createObjectURL) {
    return;
  }
  function megabytes(n) {
    return (n / 1048576).toFixed(1) + " MB";
  }
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a.export") : null;
    if (!a) {
      return;
    }
    ev.preventDefault();
    status.hidden = false;
    status.textContent = "Preparing the export…";
    fetch(a.href, { credentials: "same-origin" }).then(function (res) {
      var type = res.headers.get("Content-Type") || "";
      if (!res.ok || !res.body || type.indexOf("text/html") === 0) {
        window.location.href = a.href;
        return null;
      }
      var reader = res.body.getReader();
      var chunks = [], bytes = 0, lines = 0, shown = 0;
      var name = ((res.headers.get("Content-Disposition") || "").match(/filename="?([^";]+)"?/) || [])[1] || "export";
      function step(r) {
        if (r.done) {
          var url = URL.createObjectURL(new Blob(chunks, { type: type }));
          var link = document.createElement("a");
          link.href = url;
          link.download = name;
          document.body.appendChild(link);
          link.click();
          link.remove();
          setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
          status.textContent = "Done: " + lines.toLocaleString() + " lines, " + megabytes(bytes) + ", saved as " + name + ".";
          status.setAttribute("data-done", "true");
          return null;
        }
        chunks.push(r.value);
        bytes += r.value.length;
        for (var i = 0; i < r.value.length; i++) {
          if (r.value[i] === 10) {
            lines++;
          }
        }
        if (bytes - shown > 262144) {
          shown = bytes;
          status.textContent = "Received " + lines.toLocaleString() + " lines (" + megabytes(bytes) + ")…";
        }
        return reader.read().then(step);
      }
      return reader.read().then(step);
    }).catch(function () {
      status.textContent = "The export was interrupted; please try again.";
    });
  });
})();

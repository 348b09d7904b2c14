// Drawn signature (issue 16): on the consent page, a signer may draw their
// signature with a finger, a pen or a mouse; on signing, the drawing goes
// with the typed name as a PNG (data: URL) in the hidden field "drawing".
// Without script, the typed name signs alone.
(function () {
  "use strict";
  var pad = document.getElementById("signature-pad");
  var field = document.getElementById("drawing");
  var clear = document.getElementById("clear-signature");
  var form = document.getElementById("sign");
  if (!pad || !field || !form || !pad.getContext) {
    return;
  }
  pad.hidden = false;
  if (clear) {
    clear.hidden = false;
  }
  var ctx = pad.getContext("2d");
  ctx.lineWidth = 2;
  ctx.lineCap = "round";
  ctx.strokeStyle = "#1d2733";
  var drawing = false, drawn = false;
  function at(ev) {
    var r = pad.getBoundingClientRect();
    return { x: (ev.clientX - r.left) * pad.width / r.width, y: (ev.clientY - r.top) * pad.height / r.height };
  }
  pad.addEventListener("pointerdown", function (ev) {
    drawing = true;
    var p = at(ev);
    ctx.beginPath();
    ctx.moveTo(p.x, p.y);
    try {
      pad.setPointerCapture(ev.pointerId);
    } catch (e) {
      // a pointer the browser does not track: the drawing goes on without
    }
    ev.preventDefault();
  });
  pad.addEventListener("pointermove", function (ev) {
    if (!drawing) {
      return;
    }
    var p = at(ev);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
    drawn = true;
    ev.preventDefault();
  });
  function stop() {
    drawing = false;
  }
  pad.addEventListener("pointerup", stop);
  pad.addEventListener("pointercancel", stop);
  if (clear) {
    clear.addEventListener("click", function () {
      ctx.clearRect(0, 0, pad.width, pad.height);
      drawn = false;
      field.value = "";
    });
  }
  form.addEventListener("submit", function () {
    field.value = drawn ? pad.toDataURL("image/png") : "";
  });
})();

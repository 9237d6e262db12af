// The long-press beacon of a scan page: when a visitor presses the group QR (to save or scan
// it), report it once. The page names its live code and target in data attributes, so this file
// stays static and the page needs no inline script (the Content-Security-Policy allows none).
(function () {
  var img = document.getElementById("qr"), timer = null, sent = false;
  if (!img) return;
  var url = img.getAttribute("data-press"), body = "t=" + encodeURIComponent(img.getAttribute("data-target") || "");
  function report() {
    if (sent || !url) return; sent = true;
    if (navigator.sendBeacon) { navigator.sendBeacon(url, new Blob([body], {type: "application/x-www-form-urlencoded"})); }
    else { var x = new XMLHttpRequest(); x.open("POST", url); x.setRequestHeader("Content-Type", "application/x-www-form-urlencoded"); x.send(body); }
  }
  img.addEventListener("touchstart", function () { timer = setTimeout(report, 500); }, {passive: true});
  ["touchend", "touchmove", "touchcancel"].forEach(function (e) { img.addEventListener(e, function () { clearTimeout(timer); }, {passive: true}); });
  img.addEventListener("contextmenu", report);
})();

"""Quality: `edge check` (a bundle against the fp32 model), its metrics, gates, LPIPS and the HTML report."""

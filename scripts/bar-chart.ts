// The SVG bar chart the benches draw for the README (bench/results.svg, bench/latency.svg): one
// labelled bar per row, an optional tick on it, and the row's figure as text beside it.

export interface Bar {
  label: string;
  value: number;
  /** A second figure marked across the bar (the bench's p90, the latency bench's target). */
  tick?: number;
  /** Written after the bar (or the tick, if further right). */
  text: string;
  /** Our own rows in blue; the others (baselines, checks) in grey. */
  highlight: boolean;
}

export function barChartSvg(title: string, bars: readonly Bar[]): string {
  const width = 760;
  const barHeight = 22;
  const left = 330;
  const right = (bar: Bar) => Math.max(bar.value, bar.tick ?? bar.value);
  const max = Math.max(...bars.map(right));
  const scale = (width - left - 90) / max;
  const rows = bars.map((bar, i) => {
    const y = 30 + i * (barHeight + 8);
    const color = bar.highlight ? '#1a73e8' : '#9aa0a6';
    const tick =
      bar.tick === undefined
        ? ''
        : `<line x1="${left + bar.tick * scale}" x2="${left + bar.tick * scale}" y1="${y}" y2="${y + barHeight}" stroke="#202124"/>`;
    return [
      `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${escapeXml(bar.label)}</text>`,
      `<rect x="${left}" y="${y}" width="${(bar.value * scale).toFixed(1)}" height="${barHeight}" fill="${color}"/>`,
      tick,
      `<text x="${left + right(bar) * scale + 6}" y="${y + 15}">${escapeXml(bar.text)}</text>`,
    ].join('');
  });
  const height = 40 + bars.length * (barHeight + 8);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${left}" y="18" font-weight="bold">${escapeXml(title)}</text>
${rows.join('\n')}
</svg>
`;
}

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

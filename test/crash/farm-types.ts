/** One crash point's outcome: the scenario, what the point was, and what failed (empty: passed). */
export interface PointResult {
  scenario: string;
  point: string;
  failures: string[];
}

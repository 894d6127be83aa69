/// Names the shape of an object's region by template matching: shapes in the data set are never
/// rotated, so each of the 5 shapes is drawn at the region's centroid with the half-extent that gives
/// it the region's area, and the template that overlaps the region best (intersection over union) wins.
///
/// Why templates rather than hand-made features: the fill of the bounding box separates the circle
/// (0.79) and the square (1.0) but not the diamond (0.5), the triangle (0.5) and the cross (0.58); a
/// template scores every shape on the same footing. On drawn frames of every shape, size and sub-pixel
/// position the right template scores 0.86-1 and the best wrong one at most 0.85 (FrameAnalyzerTests).
public enum ShapeClassifier {
    public struct Match: Sendable {
        public var shape: Shape
        /// Intersection over union of the region and the shape's template.
        public var score: Double
        /// Every shape's score, in `Shape.allCases` order.
        public var scores: [Double]
    }

    static func classify(_ region: Region) -> Match {
        let area = Double(region.pixels.count)
        let centroid = region.centre
        var scores: [Double] = []
        for shape in Shape.allCases {
            let r = (area / shape.areaFactor).squareRoot()
            let centre = Point(centroid.x, centroid.y - shape.centroidDrop * r)
            // Intersection: region pixels inside the template (coverage above one half: distance < 0).
            var inside = 0
            for p in region.pixels where shape.signedDistance(Double(p.x) + 0.5 - centre.x, Double(p.y) + 0.5 - centre.y, radius: r) < 0 {
                inside += 1
            }
            // The template's own pixel count, over the box that holds it.
            var template = 0
            let x0 = Int((centre.x - r - 1).rounded(.down)), x1 = Int((centre.x + r + 1).rounded(.up))
            let y0 = Int((centre.y - r - 1).rounded(.down)), y1 = Int((centre.y + r + 1).rounded(.up))
            for y in y0...y1 {
                for x in x0...x1 where shape.signedDistance(Double(x) + 0.5 - centre.x, Double(y) + 0.5 - centre.y, radius: r) < 0 {
                    template += 1
                }
            }
            let union = region.pixels.count + template - inside
            scores.append(union > 0 ? Double(inside) / Double(union) : 0)
        }
        let best = scores.indices.max { scores[$0] < scores[$1] }!
        return Match(shape: Shape.allCases[best], score: scores[best], scores: scores)
    }
}

"""What a trained model gives: detections, evaluation, counts, the missing-label finder."""

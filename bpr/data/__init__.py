"""From files to the project store and back: the store, video access, the formats, training sets."""

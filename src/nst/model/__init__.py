"""The model: the VGG19 feature extractor, the loss terms, colour handling and the LightningModule."""

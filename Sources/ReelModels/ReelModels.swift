// Replaced by the models.

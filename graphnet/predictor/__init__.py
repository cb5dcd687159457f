"""caffe2.python.predictor: exporting a trained net as (init_net, predict_net)."""
